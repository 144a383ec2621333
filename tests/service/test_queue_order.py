"""A worker taking both queues takes the control queue's tasks first (outreach/celeryapp.py's
transport options), on real Redis: a crisis text's tasks, and the beat ticks ahead of them on
the control queue, never wait for their turn behind send tasks."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu.entity import Queue

from outreach.celeryapp import (
    consumed_queues,
    control_queue,
    make_celery,
    replies_queue,
    take_replies_lane,
)
from outreach.config import load_settings


def _taken(app: Celery, queues: list[Queue], published: Sequence[str], count: int) -> list[str]:
    """Publish a task to each of ``published`` in turn, then take ``count`` of them one at a
    time, as pool processes coming free do; the queue each came from, in the order taken."""
    received: list[str] = []

    def take(body: Any, message: Any) -> None:
        received.append(message.delivery_info["routing_key"])
        message.ack()

    with app.connection_for_write() as conn:
        try:
            for name in published:
                app.send_task("outreach.reconcile_unknown", queue=name, connection=conn, declare=queues)
            with conn.Consumer(queues, callbacks=[take], prefetch_count=1):
                while len(received) < count:
                    conn.drain_events(timeout=5)
        finally:
            for queue in queues:
                queue(conn.default_channel).delete()  # type: ignore[no-untyped-call]
    return received


def test_a_worker_taking_both_queues_empties_the_control_queue_first(redis_url: str) -> None:
    settings = load_settings(broker_url=redis_url, celery_queue=f"order-{uuid.uuid4().hex[:8]}")
    assert settings.worker_queues == "all"
    app = make_celery(settings)
    sends, control = settings.celery_queue, control_queue(settings)
    queues = [app.amqp.queues[name] for name in consumed_queues(settings)]
    received = _taken(app, queues, (sends, control) * 3, 4)  # the send tasks were there first
    # One process coming free at a time: the control queue until it is empty, then the sends
    # (taking the queues in turn would give control, sends, control, sends).
    assert received == [control, control, control, sends]


def test_a_send_worker_started_with_dash_q_takes_the_replies_lane_first(redis_url: str) -> None:
    """docker compose and the README start send workers as `-Q outreach`: such a worker also
    takes the replies lane (worker.py, after -Q is applied), and takes it before the send
    queue, so a nurse's answer goes out ahead of the send tasks queued before it."""
    settings = load_settings(broker_url=redis_url, celery_queue=f"lane-{uuid.uuid4().hex[:8]}")
    app = make_celery(settings)
    sends, replies = settings.celery_queue, replies_queue(settings)
    app.amqp.queues.select([sends])  # what -Q does
    take_replies_lane(app, settings)
    assert list(app.amqp.queues.consume_from) == [replies, sends]
    queues = list(app.amqp.queues.consume_from.values())
    received = _taken(app, queues, (sends, sends, sends, replies), 2)  # the answer came last
    assert received == [replies, sends]


def test_the_replies_lane_is_taken_by_every_worker_that_sends() -> None:
    for queues, expected in (
        ("all", ["{q}.control", "{q}.replies", "{q}"]),
        ("sends", ["{q}.replies", "{q}"]),
        ("control", ["{q}.control"]),
    ):
        settings = load_settings(worker_queues=queues)
        names = [name.format(q=settings.celery_queue) for name in expected]
        assert consumed_queues(settings) == names
        app = make_celery(settings)
        app.amqp.queues.select(consumed_queues(settings))
        take_replies_lane(app, settings)
        assert list(app.amqp.queues.consume_from) == names, "nothing moved"


def test_a_task_published_to_a_queues_exchange_reaches_that_queue_alone(redis_url: str) -> None:
    """Each queue is bound to an exchange of its own name by its own name: a task published by
    exchange and routing key (a route someone configures, another tool) lands once. Declared
    by name alone, the queues were bound to the send queue's exchange by the send queue's key,
    and such a task was delivered to each."""
    settings = load_settings(broker_url=redis_url, celery_queue=f"bound-{uuid.uuid4().hex[:8]}")
    app = make_celery(settings)
    names = consumed_queues(settings)
    queues = [app.amqp.queues[name] for name in names]
    found: dict[str, list[str]] = {}
    with app.connection_for_write() as conn:
        try:
            for name in names:
                app.send_task(
                    "outreach.reconcile_unknown", task_id=f"to-{name}", exchange=name, routing_key=name,
                    connection=conn, declare=queues,
                )
            for queue in queues:
                bound = queue(conn.default_channel)
                found[queue.name] = []
                while (message := bound.get(no_ack=True)) is not None:
                    found[queue.name].append(message.headers["id"])
        finally:
            for queue in queues:
                queue(conn.default_channel).delete()
    assert found == {name: [f"to-{name}"] for name in names}
    assert len(names) == 3
