"""Inbound-reply tasks: ids in, one outreach call."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from celery import shared_task

from outreach import runtime
from outreach.celeryapp import (
    DISPATCH_DUE,
    PROCESS_INBOUND,
    PROCESS_INBOUND_MANY,
    inbound_batches,
)
from outreach.replies.inbound import process_each, unprocessed_inbound_ids
from tasks.delivery import send_urgent


@shared_task(name=PROCESS_INBOUND_MANY, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def process_inbound_many(inbound_ids: list[int]) -> None:
    """Texts the webhook stored together (a crisis text is stored, and enqueued, on its own)."""
    services = runtime.current()

    process_each(
        services.session_factory,
        services.settings,
        inbound_ids,
        services.clock,
        partial(send_urgent, services.settings),
    )
    # Other replies (HELP, confirmations) go in due order, without waiting a tick.
    process_inbound_many.app.send_task(DISPATCH_DUE, kwargs={"run_for": 0.0})


@shared_task(name=PROCESS_INBOUND, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def process_inbound(inbound_id: int) -> None:
    """One text by id: tasks published before the webhook enqueued in batches."""
    process_inbound_many([inbound_id])


# Stored replies older than this with no processing are assumed to have lost their task.
LOST_AFTER = timedelta(seconds=30)


@shared_task(name="outreach.process_unprocessed_inbound", ignore_result=True)
def process_unprocessed_inbound() -> None:
    services = runtime.current()
    with services.session_factory() as session:
        ids = unprocessed_inbound_ids(session, received_before=services.clock() - LOST_AFTER)
    for batch in inbound_batches(ids):
        process_inbound_many.delay(batch)
