"""`outreach serve` with several web processes (OUTREACH_WEB_WORKERS): one port, counters
added up across processes, one clock, and a process that dies replaced while the others answer."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from outreach.migrate import upgrade
from tests.support.e2e import environment, system_settings
from tests.support.processes import Stack, free_port, stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

FAILURES = 'outreach_webhook_signature_failures_total{webhook="status"}'


def _environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


def _servers(processes: Stack) -> set[int]:
    """The web processes started so far, as uvicorn logs them."""
    return {int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", processes.log("web"))}


def _failures(base: str) -> float:
    # A new connection each time, so the processes take turns answering.
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(FAILURES))


def test_several_web_processes_share_one_port_one_count_and_one_clock(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    port = free_port()
    # Twilio on this machine (nothing answers there): no real secrets needed.
    settings = system_settings(
        pg_url, port, web_workers=2, log_level="INFO", log_format="text",
        twilio_api_base_url=f"http://127.0.0.1:{free_port()}", smtp_host="127.0.0.1",
    )
    env = environment(settings) | {"OUTREACH_CLOCK": "2031-01-15T11:00:00+00:00"}
    base = f"http://127.0.0.1:{port}"
    with stack(env, tmp_path) as processes:
        processes.start_web(port)
        wait_for(lambda: len(_servers(processes)) == 2, timeout=30, what="two web processes")
        children = sorted(_servers(processes))
        shared = [_environ(pid) for pid in children]
        # One metrics directory made for them, and the fixed clock as one offset for both.
        assert len({e["PROMETHEUS_MULTIPROC_DIR"] for e in shared}) == 1
        assert all("OUTREACH_CLOCK" not in e and "OUTREACH_CLOCK_OFFSET_SECONDS" in e for e in shared)
        assert len({e["OUTREACH_CLOCK_OFFSET_SECONDS"] for e in shared}) == 1

        for _ in range(30):
            refused = httpx.post(f"{base}/webhooks/twilio/status", data={"MessageSid": "SMx"}, timeout=10)
            assert refused.status_code == 403
        # Whichever process answers the scrape, it adds up every process's count.
        assert [_failures(base) for _ in range(6)] == [30.0] * 6

        os.kill(children[0], signal.SIGKILL)
        wait_for(lambda: len(_servers(processes)) == 3, timeout=30, what="a new process for the killed one")
        assert all(httpx.get(f"{base}/healthz", timeout=10).status_code == 200 for _ in range(6))
        # The dead process's counts are kept.
        assert _failures(base) == 30.0
