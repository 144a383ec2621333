"""A worker taking both queues takes the control queue's tasks first (outreach/celeryapp.py's
transport options), on real Redis: a crisis text's tasks, and the beat ticks ahead of them on
the control queue, never wait for their turn behind send tasks."""

from __future__ import annotations

import uuid
from typing import Any

from outreach.celeryapp import consumed_queues, control_queue, make_celery
from outreach.config import load_settings


def test_a_worker_taking_both_queues_empties_the_control_queue_first(redis_url: str) -> None:
    settings = load_settings(broker_url=redis_url, celery_queue=f"order-{uuid.uuid4().hex[:8]}")
    assert settings.worker_queues == "all"
    app = make_celery(settings)
    sends, control = settings.celery_queue, control_queue(settings)
    queues = [app.amqp.queues[name] for name in consumed_queues(settings)]
    received: list[str] = []

    def take(body: Any, message: Any) -> None:
        received.append(message.delivery_info["routing_key"])
        message.ack()

    with app.connection_for_write() as conn:
        try:
            for name in (sends, control) * 3:  # the send tasks were there first
                app.send_task("outreach.reconcile_unknown", queue=name, connection=conn, declare=queues)
            with conn.Consumer(queues, callbacks=[take], prefetch_count=1):
                while len(received) < 4:
                    conn.drain_events(timeout=5)
        finally:
            for queue in queues:
                queue(conn.default_channel).delete()
    # One process coming free at a time: the control queue until it is empty, then the sends
    # (taking the queues in turn would give control, sends, control, sends).
    assert received == [control, control, control, sends]


def test_a_task_published_to_a_queues_exchange_reaches_that_queue_alone(redis_url: str) -> None:
    """Each queue is bound to an exchange of its own name by its own name: a task published by
    exchange and routing key (a route someone configures, another tool) lands once. Declared
    by name alone, both queues were bound to the send queue's exchange by the send queue's key,
    and such a task was delivered to both."""
    settings = load_settings(broker_url=redis_url, celery_queue=f"bound-{uuid.uuid4().hex[:8]}")
    app = make_celery(settings)
    sends, control = settings.celery_queue, control_queue(settings)
    queues = [app.amqp.queues[name] for name in consumed_queues(settings)]
    found: dict[str, list[str]] = {}
    with app.connection_for_write() as conn:
        try:
            for name in (sends, control):
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
    assert found == {sends: [f"to-{sends}"], control: [f"to-{control}"]}
