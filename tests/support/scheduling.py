"""How ``make test`` shares two pytest-xdist workers (``-n 2 --dist loadgroup``).

Tests that start processes (``tests/e2e``) or time things across threads and processes
(``real_timers``) form one work unit: one worker runs them one at a time, as they would run
alone, while the other worker takes the in-process layers. The unit is decided on the
controller, which sees only node ids, so a file belongs to it when it lives in ``tests/e2e`` or
uses the ``real_timers`` mark.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadGroupScheduling

PROCESSES = "processes"
REPO = Path(__file__).resolve().parents[2]


@cache
def _uses_real_timers(path: str) -> bool:
    try:
        return "pytest.mark.real_timers" in (REPO / path).read_text(encoding="utf-8")
    except OSError:
        return False


def work_unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/e2e/") or _uses_real_timers(path):
        return PROCESSES
    return nodeid


class ProcessesApart(LoadGroupScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)


def make_scheduler(config: pytest.Config, log: Producer) -> LoadGroupScheduling | None:
    if config.getvalue("dist") != "loadgroup":
        return None
    return ProcessesApart(config, log)
