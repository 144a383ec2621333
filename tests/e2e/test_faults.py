"""Fault tests: kill workers, restart Redis, drop database connections, run two beats.

After each, the sandbox's accept counts show no message sent twice, and every message ends
sent (here nothing fails for good), helped only by the sweeps beat would run anyway.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from outreach.models import Message, MessageState, utcnow
from outreach.outbox import insert_messages
from tests.support.e2e import System, daytime_zone, running_system
from tests.support.factories import make_contact
from tests.support.processes import private_redis
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

MESSAGES = 80
DONE = {MessageState.SENT, MessageState.DELIVERED}


@contextmanager
def slow_system(pg_url: str, tmp_path: Path, **kwargs: Any) -> Iterator[System]:
    with running_system(pg_url, tmp_path, **kwargs) as system:
        # Every provider call takes a while, so faults land in the middle of batches.
        system.sandbox.control.inject("latency", seconds=0.05)
        yield system


def _load(system: System, count: int = MESSAGES) -> list[int]:
    with system.factory.begin() as session:
        contacts = [make_contact(session, timezone=daytime_zone()).id for _ in range(count // 2)]
        rows = [
            {
                "idempotency_key": f"fault:{n}",
                "contact_id": contacts[n % len(contacts)],
                "channel": "sms",
                "category": "care",
                "kind": "automated",
                "body_override": f"Fault test message {n}.",
                "due_at": utcnow(),
            }
            for n in range(count)
        ]
        insert_messages(session, rows)
        return list(session.scalars(select(Message.id).where(Message.idempotency_key.like("fault:%"))))


def _settle(system: System, ids: list[int], timeout: float = 90) -> None:
    """Wait until every message is sent, running the rescue and reconcile sweeps as beat would.

    The deadline is inside pytest's own timeout, so a failure names the states it found.
    """
    last: dict[str, list[str | None]] = {}

    def all_done() -> bool:
        with system.factory() as session:
            rows = session.execute(
                select(Message.state, Message.state_reason).where(Message.id.in_(ids))
            ).all()
        last.clear()
        for state, reason in rows:
            last.setdefault(state, []).append(reason)
        if set(last) <= DONE:
            return True
        system.run_task("outreach.rescue_stuck")
        system.run_task("outreach.reconcile_unknown")
        return False

    try:
        wait_for(all_done, timeout=timeout, interval=1.0, what="every message to be sent")
    except AssertionError as timed_out:
        pending = {s: sorted(set(map(str, reasons))) for s, reasons in last.items() if s not in DONE}
        raise AssertionError(f"{timed_out}; not sent: {pending}") from None


def _assert_never_twice(system: System, ids: list[int]) -> None:
    accepts = system.sandbox.control.accepts()
    assert accepts.duplicates == [], f"sent twice: {accepts.duplicates}"
    assert accepts.total == len(ids)


def _accepted(system: System) -> int:
    return system.sandbox.control.accepts().total


@pytest.mark.parametrize("kill_after", [5, 40])
def test_worker_killed_mid_batch_sends_nothing_twice(pg_url: str, tmp_path: Path, kill_after: int) -> None:
    with slow_system(pg_url, tmp_path, workers=2) as system:
        ids = _load(system)
        wait_for(lambda: _accepted(system) >= kill_after, timeout=60, what=f"{kill_after} sends")
        system.processes.kill("worker1", signal.SIGKILL)
        system.processes.start_worker("worker1")
        _settle(system, ids)
        _assert_never_twice(system, ids)


@pytest.mark.real_timers  # a private redis-server under libfaketime never answers
def test_redis_restart_loses_no_message(pg_url: str, tmp_path: Path) -> None:
    with (
        private_redis() as redis,
        slow_system(pg_url, tmp_path, broker_url=redis.url, redis_url=redis.url) as system,
    ):
        ids = _load(system)
        wait_for(lambda: _accepted(system) >= 10, timeout=60, what="sending to be under way")
        redis.restart()  # no persistence: every queued task and rate slot is gone
        _settle(system, ids)
        _assert_never_twice(system, ids)


def test_dropped_database_connections_lose_nothing(pg_url: str, tmp_path: Path) -> None:
    name = pg_url.rsplit("/", 1)[1]
    admin = pg_url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    with slow_system(pg_url, tmp_path) as system:
        ids = _load(system)
        for _ in range(3):
            wait_for(lambda: _accepted(system) >= 5, timeout=60, what="sending to be under way")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
            time.sleep(0.5)  # let a few sends start on fresh connections before the next drop
        _settle(system, ids)
        _assert_never_twice(system, ids)


def test_two_beats_and_two_workers_send_each_message_once(pg_url: str, tmp_path: Path) -> None:
    with slow_system(pg_url, tmp_path, workers=2, beats=2) as system:
        ids = _load(system, count=120)
        _settle(system, ids)
        _assert_never_twice(system, ids)
