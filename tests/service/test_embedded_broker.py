"""The embedded broker's queues exist before `outreach run` starts its processes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from outreach.celeryapp import control_queue, declare_queues, replies_queue
from outreach.config import load_settings


def test_every_queue_is_declared_by_one_process_first(tmp_path: Path) -> None:
    """kombu's SQLAlchemy transport creates a queue's row on first use, unguarded across
    processes: a worker and beat starting together both insert it and the loser's worker stops.
    `outreach run` declares the send, replies and control queues itself before it starts them."""
    broker = tmp_path / "broker.sqlite"
    settings = load_settings(broker_url=f"sqla+sqlite:///{broker}")

    declare_queues(settings)
    declare_queues(settings)  # and again, as at every start: nothing to add

    with sqlite3.connect(broker) as db:
        names = sorted(name for (name,) in db.execute("SELECT name FROM kombu_queue"))
    assert names == sorted([settings.celery_queue, replies_queue(settings), control_queue(settings)])


def test_nothing_is_declared_on_redis_before_the_processes_start() -> None:
    """Redis keeps no queue rows to race for; a Redis that is down at start must not hold
    `outreach run` itself (its children retry)."""
    declare_queues(load_settings(broker_url="redis://127.0.0.1:1/0"))  # nothing listens there
