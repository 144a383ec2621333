"""`make run` on embedded defaults: SQLite file, the broker that needs no server, the sandbox,
demo data. Only the ports are moved, so the test never collides with a developer's instance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.processes import REPO, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def _outreach(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "outreach.cli.app", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_run_on_embedded_defaults_delivers_the_demo_booking_confirmation(tmp_path: Path) -> None:
    (tmp_path / "templates").symlink_to(REPO / "templates")
    web, api, smtp = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTREACH_", "TWILIO_"))}
    env.update(
        OUTREACH_WEB_PORT=str(web),
        OUTREACH_PUBLIC_BASE_URL=f"http://127.0.0.1:{web}",
        OUTREACH_SANDBOX_HTTP_PORT=str(api),
        OUTREACH_SANDBOX_SMTP_PORT=str(smtp),
    )
    _outreach(["db", "upgrade"], tmp_path, env)
    _outreach(["demo", "seed"], tmp_path, env)
    runner = subprocess.Popen(
        [sys.executable, "-m", "outreach.cli.app", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def confirmation_delivered() -> bool:
            listing = json.loads(_outreach(["messages", "list", "--json"], tmp_path, env))
            rows = listing["messages"] if isinstance(listing, dict) else listing
            return any(m["state"] == "delivered" and m["channel"] == "sms" for m in rows)

        wait_for(
            confirmation_delivered,
            timeout=90,
            interval=1.0,
            what="the demo booking confirmation to be delivered",
        )
        health = httpx.get(f"http://127.0.0.1:{web}/healthz").json()
        assert health == {"status": "ok", "database": "ok", "broker": "ok"}  # the embedded broker too
        phone = httpx.get(f"http://127.0.0.1:{api}/phone/+19255550101").text
        assert "Reply 1" in phone
        assert (tmp_path / "outreach.sqlite").exists()
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    assert runner.returncode == 0
