"""How many web processes `outreach serve` runs."""

from __future__ import annotations

from outreach.config import load_settings
from outreach.web.process import worker_count


def test_outreach_serve_runs_the_web_processes_asked_for() -> None:
    assert worker_count(load_settings(web_workers=3), cpus=8) == 3


def test_outreach_serve_runs_one_web_process_per_cpu_by_default() -> None:
    assert worker_count(load_settings(), cpus=8) == 8
