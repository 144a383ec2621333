"""Delivery tasks: ids in, one outreach call, nothing else."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import shared_task

from outreach import runtime
from outreach.celeryapp import control_queue, replies_queue
from outreach.config import Settings
from outreach.delivery import claim, dispatch, reconcile, rollup, send, status
from outreach.ops import metrics
from outreach.replies import inbound

SEND_TASK = "outreach.send_messages"

log = logging.getLogger(__name__)


def _publish(chunks: Sequence[Sequence[int]], queue: str | None = None) -> None:
    # One pooled producer for the whole claim: acquiring one per task costs more than the
    # publish itself at hundreds of tasks a second.
    # No queue: the default (send) queue, as celery routes a task whose queue is None.
    with send_messages.app.producer_or_acquire() as producer:
        for ids in chunks:
            send_messages.apply_async((list(ids),), producer=producer, queue=queue)


def _waiting(queue: str | None = None) -> int:
    """Send tasks waiting in the broker (kombu's queue size: LLEN on Redis, a row count on
    the embedded broker)."""
    queue = queue or send_messages.app.conf.task_default_queue
    with send_messages.app.pool.acquire(block=True) as connection:
        declared = connection.default_channel.queue_declare(queue=queue, passive=False)
    return int(declared.message_count)


@shared_task(name="outreach.dispatch_due", ignore_result=True)
def dispatch_due(run_for: float = 0.9) -> int:
    services = runtime.current()
    replies = replies_queue(services.settings)
    return dispatch.dispatch_due(
        services,
        _publish,
        enqueue_replies=lambda chunks: _publish(chunks, replies),
        waiting=_waiting,
        waiting_replies=lambda: _waiting(replies),
        run_for=run_for,
    )


# acks_late + reject_on_worker_lost: a worker killed mid-task gets the ids redelivered; each
# message's conditional state change makes the redelivery a no-op for what was already done.
@shared_task(name=SEND_TASK, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def send_messages(message_ids: list[int]) -> None:
    send.send_batch(runtime.current(), message_ids)


def send_urgent(settings: Settings, message_ids: list[int]) -> None:
    """A crisis reply and its alerts, claimed already, to a send task on the control queue: they
    never wait behind a campaign's send tasks."""
    queue = control_queue(settings)
    task = send_messages.apply_async((message_ids,), queue=queue)
    # With the worker's "received" line for the same task id, this tells a publish that never
    # arrived from a task that arrived late (ids only).
    log.info("urgent messages %s handed to %s as task %s", message_ids, queue, task.id)


@shared_task(name="outreach.apply_status_events", ignore_result=True)
def apply_status_events(run_for: float = 0.5) -> None:
    # Bounded, so a backlog of callbacks never holds a control slot a crisis text needs for
    # long; beat ticks again within a second.
    services = runtime.current()
    done = status.apply_for(services.session_factory, services.clock, run_for)
    metrics.STATUS_EVENTS.labels("applied").inc(done.applied)
    metrics.STATUS_EVENTS.labels("dropped").inc(done.dropped)


@shared_task(name="outreach.rescue_stuck", ignore_result=True)
def rescue_stuck() -> None:
    services = runtime.current()
    with services.session_factory() as session, session.begin():
        now = services.clock()
        released = claim.release_stale_claims(session, now)
        urgent = inbound.reclaim_urgent(session, services.settings, released, now)
        claim.mark_stuck_sends_unknown(session, now)
    if urgent:
        # Back on the control queue, where the lost task was: ahead of any backlog.
        send_urgent(services.settings, urgent)


@shared_task(name="outreach.reconcile_unknown", ignore_result=True)
def reconcile_unknown() -> None:
    reconcile.reconcile_unknown(runtime.current())


@shared_task(name="outreach.count_delivery_days", ignore_result=True)
def count_delivery_days() -> None:
    services = runtime.current()
    with services.session_factory() as session, session.begin():
        rollup.count_days(session, services.clock(), services.settings.clinic_zone)
