"""`make run` on embedded defaults: SQLite file, the broker that needs no server, the sandbox,
demo data. Only the ports are moved, so the test never collides with a developer's instance,
and the clock is fixed (OUTREACH_CLOCK), so the test means the same at any hour."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import REPO, free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

# A Wednesday: noon is inside the sending window, 03:00 far outside it.
NOON = "2026-06-10T12:00:00-07:00"
NIGHT = "2026-06-10T03:00:00-07:00"
BOOKING_CONFIRMATION = "sms/appointments/booked"  # the demo visit's, to +19255550101


@dataclass
class Running:
    cwd: Path
    env: dict[str, str]
    web: int
    sandbox: int
    runner: subprocess.Popen[bytes]
    # One client for the polls: a new one builds a TLS context each time (~20 ms of CPU).
    client: httpx.Client

    def output(self) -> str:
        """What `outreach run` and its processes printed so far (a file: a pipe nobody reads
        fills up and stalls the processes that write to it)."""
        return (self.cwd / "run.log").read_text(errors="replace")

    def outreach(self, *args: str) -> str:
        return _outreach(list(args), self.cwd, self.env)

    def page(self, path: str) -> str:
        """The sandbox page, or "" while the sandbox is still starting."""
        try:
            return self.client.get(f"http://127.0.0.1:{self.sandbox}{path}").text
        except httpx.ConnectError:
            return ""

    def page_showing(self, path: str, text: str) -> str:
        """The page once it shows ``text``, else "" (for ``wait_for``)."""
        page = self.page(path)
        return page if text in page else ""


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


@contextmanager
def make_run(tmp_path: Path, clock: str) -> Iterator[Running]:
    """`outreach db upgrade`, `demo seed` and `run`, as `make run` does, with the clock fixed."""
    (tmp_path / "templates").symlink_to(REPO / "templates")
    web, api, smtp = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTREACH_", "TWILIO_"))}
    env.update(
        OUTREACH_WEB_PORT=str(web),
        OUTREACH_PUBLIC_BASE_URL=f"http://127.0.0.1:{web}",
        OUTREACH_SANDBOX_HTTP_PORT=str(api),
        OUTREACH_SANDBOX_SMTP_PORT=str(smtp),
        OUTREACH_CLOCK=clock,
    )
    _outreach(["db", "upgrade"], tmp_path, env)
    _outreach(["demo", "seed"], tmp_path, env)
    log = (tmp_path / "run.log").open("wb")
    runner = subprocess.Popen(
        [sys.executable, "-m", "outreach.cli.app", "run"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with httpx.Client(timeout=5) as client:
            yield Running(tmp_path, env, web, api, runner, client)
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
        log.close()
    assert runner.returncode == 0, (tmp_path / "run.log").read_text(errors="replace")[-2000:]


def _messages(running: Running) -> list[dict[str, object]]:
    listing = json.loads(running.outreach("messages", "list", "--json"))
    rows: list[dict[str, object]] = listing["messages"] if isinstance(listing, dict) else listing
    return rows


def _stored_state(running: Running, template: str) -> str | None:
    """The state of the message from ``template``, read from the SQLite file itself: waiting on
    `outreach messages list` would start a Python process a second, a core's worth of work taken
    from the processes under test on a busy two-core machine."""
    try:
        with closing(sqlite3.connect(f"file:{running.cwd / 'outreach.sqlite'}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT state FROM messages WHERE template = ?", (template,)).fetchone()
    except sqlite3.OperationalError:  # locked for a moment by a writer
        return None
    return str(row[0]) if row else None


def test_run_on_embedded_defaults_delivers_the_demo_booking_confirmation(tmp_path: Path) -> None:
    with make_run(tmp_path, NOON) as running:

        # This message, not any SMS: the demo's crisis text is answered on the control queue,
        # and on a busy machine that answer can be delivered first.
        wait_for(
            lambda: _stored_state(running, BOOKING_CONFIRMATION) == "delivered",
            timeout=90,
            interval=0.5,
            what="the demo booking confirmation to be delivered",
        )
        listed = [m for m in _messages(running) if m["template"] == BOOKING_CONFIRMATION]
        assert [m["state"] for m in listed] == ["delivered"]  # what staff see in `messages list`
        health = running.client.get(f"http://127.0.0.1:{running.web}/healthz").json()
        assert health == {"status": "ok", "database": "ok", "broker": "ok"}  # the embedded broker too
        phone = running.page("/phone/+19255550101")
        assert "Reply 1" in phone
        assert (tmp_path / "outreach.sqlite").exists()


def test_run_at_3am_shows_a_conversation_and_says_what_is_held_until_when(tmp_path: Path) -> None:
    with make_run(tmp_path, NIGHT) as running:
        # Within a minute: the demo patient's own text, the answer to it and a staff reply (the
        # answer comes from the control worker, the staff reply from a send worker: either
        # may arrive first).
        after_hours = "a team member will get back to you during office hours"
        blake = wait_for(
            lambda: running.page_showing("/phone/+19255550102", DEMO_STAFF_REPLY)
            and running.page_showing("/phone/+19255550102", after_hours),
            timeout=60,
            interval=1.0,
            what="the demo conversation on the fake phone",
        )
        assert "Hi, is there parking at the clinic?" in blake
        casey = wait_for(
            lambda: running.page_showing("/phone/+12125550103", "988"),
            timeout=30,
            interval=1.0,
            what="the crisis reply on the fake phone",
        )
        assert "I can&#39;t go on" in casey

        index = " ".join(running.page("/").split())
        assert "next message 08:00 Pacific — quiet hours" in index
        assert "Point the app" not in running.page("/mail")

        # Quiet hours hold the automated booking confirmation; nothing bent the rule.
        automated = [m for m in _messages(running) if m["kind"] == "automated" and m["channel"] == "sms"]
        assert automated and all(m["state"] == "scheduled" for m in automated)

    banner = " ".join(running.output().split())
    assert "next message 08:00 Pacific — quiet hours" in banner


DEMO_STAFF_REPLY = "Yes - free parking behind the building."
