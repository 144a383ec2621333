"""The Celery application, built from settings. The worker and beat use it through worker.py;
the web process and the CLI use it only to publish tasks by name."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue
from kombu.transport import sqlalchemy as sqlalchemy_transport

from outreach import broker_fix
from outreach.config import Settings
from outreach.outbox.idsets import slices

TASK_MODULES = ["tasks.delivery", "tasks.replies", "tasks.campaigns", "tasks.retention"]
PROCESS_INBOUND = "outreach.process_inbound"
PROCESS_INBOUND_MANY = "outreach.process_inbound_many"
# Inbound texts per processing task: one publish for the texts stored together, yet no task
# long enough to hold a control slot for seconds.
INBOUND_PER_TASK = 50
DISPATCH_DUE = "outreach.dispatch_due"
# Everything but the sends: the dispatcher, patients' replies and the sweeps. On a queue of
# their own, they never wait behind a backlog of send tasks (a crisis text is processed at
# once, and the dispatcher keeps claiming while workers send).
CONTROL_TASKS = (
    DISPATCH_DUE,
    PROCESS_INBOUND,
    PROCESS_INBOUND_MANY,
    "outreach.apply_status_events",
    "outreach.rescue_stuck",
    "outreach.reconcile_unknown",
    "outreach.process_unprocessed_inbound",
    "outreach.complete_enrollments",
    "outreach.count_delivery_days",
)


def inbound_batches(inbound_ids: Sequence[int]) -> list[list[int]]:
    """The ids for ``PROCESS_INBOUND_MANY`` tasks, ``INBOUND_PER_TASK`` at most each."""
    return [list(batch) for batch in slices(inbound_ids, INBOUND_PER_TASK)]


def control_queue(settings: Settings) -> str:
    return f"{settings.celery_queue}.control"


def replies_queue(settings: Settings) -> str:
    """The replies lane: send tasks of what is not automated (staff's answers, HELP, an
    opt-out's confirmation, the acknowledgement of a patient's text). Send workers take it
    before the send queue, so an answer never waits behind a campaign's backlog of send tasks."""
    return f"{settings.celery_queue}.replies"


def all_queues(settings: Settings) -> list[str]:
    """Every queue of this deployment, in the order a worker taking them all takes them."""
    return consumed_queues(settings.model_copy(update={"worker_queues": "all"}))


def consumed_queues(settings: Settings) -> list[str]:
    """The queues a worker with these settings takes tasks from, in the order it takes them."""
    named = {
        "all": [control_queue(settings), settings.celery_queue],
        "sends": [settings.celery_queue],
        "control": [control_queue(settings)],
    }[settings.worker_queues]
    return with_replies_lane(settings, named)


def with_replies_lane(settings: Settings, queues: Sequence[str]) -> list[str]:
    """``queues`` (a worker's ``-Q``) with the replies lane just before the send queue, if the
    send queue is among them: a worker started as ``-Q outreach`` (the README's and docker
    compose's) takes the staff answers the dispatcher puts on their own lane too."""
    lane = replies_queue(settings)
    taken = [name for name in queues if name != lane]
    if settings.celery_queue not in taken:
        return list(queues)
    at = taken.index(settings.celery_queue)
    return [*taken[:at], lane, *taken[at:]]


def take_replies_lane(app: Celery, settings: Settings) -> None:
    """Make a worker whose queues were chosen by ``-Q`` take the replies lane with the send
    queue (celery's ``celeryd_after_setup``, after ``-Q`` is applied; worker.py)."""
    queues = app.amqp.queues
    queues.select(with_replies_lane(settings, list(queues.consume_from)))


def _own_queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]


def celery_config(settings: Settings) -> dict[str, Any]:
    import scheduler  # the beat entries live at the top level, beside worker.py

    return {
        "broker_url": settings.broker_url,
        "task_default_queue": settings.celery_queue,
        # The queues a worker consumes (OUTREACH_WORKER_QUEUES); tasks still go to either. Each
        # bound to an exchange of its own name by its own name: named alone, both would be bound
        # to the default exchange (the send queue's) by the send queue's name, and a task
        # published through that exchange would be delivered to both.
        "task_queues": [_own_queue(name) for name in consumed_queues(settings)],
        "task_routes": {name: {"queue": control_queue(settings)} for name in CONTROL_TASKS},
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # At-least-once delivery of a task; the outbox's conditional updates make it safe.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # CPUs + 2: the dispatch run holds one pool process most of the time, and a sender
        # waits on the provider and the database for part of each batch, so with CPUs + 1 a
        # core sat partly idle (measured in docs/benchmarks.md).
        "worker_concurrency": settings.worker_concurrency or (os.cpu_count() or 1) + 2,
        "broker_transport_options": transport_options(settings.broker_url),
        "task_time_limit": 300,
        "task_soft_time_limit": 240,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": scheduler.beat_schedule(settings),
    }


def _on_redis(broker_url: str) -> bool:
    """Redis, the production broker; anything else here is the embedded one (kombu's
    SQLAlchemy transport)."""
    return broker_url.startswith(("redis://", "rediss://"))


def transport_options(broker_url: str) -> dict[str, Any]:
    if _on_redis(broker_url):
        return {
            # Longer than any task can run, so Redis never re-delivers a task still in progress.
            "visibility_timeout": 3600,
            # A worker taking both queues takes the control queue's tasks first whenever a
            # process comes free (kombu's default alternates the queues): a crisis text and the
            # ticks ahead of it do not wait behind send tasks.
            "queue_order_strategy": "priority",
        }
    # The embedded broker (kombu's SQLAlchemy transport on a SQLite file) gets none: that
    # transport hands every option to SQLAlchemy's create_engine (see _brisk_embedded_broker).
    return {}


# How often the embedded broker looks for tasks when none is waiting: kombu's default is a
# second, a second at every hop from a patient's text to its reply (the webhook's task, then
# the send task). A tenth costs each consuming process ten reads a second of a small SQLite table.
EMBEDDED_POLL_SECONDS = 0.1


def _brisk_embedded_broker() -> None:
    """Set the embedded broker's polling interval on its transport class: its transport options
    would reach create_engine, which refuses them. Only the embedded broker uses this transport."""
    sqlalchemy_transport.Transport.polling_interval = EMBEDDED_POLL_SECONDS


def declare_queues(settings: Settings) -> None:
    """Declare the send, replies and control queues once, before several processes start at once.

    kombu's SQLAlchemy transport (the embedded broker) creates a queue's row on its first use,
    guarded by a lock within one process only: two processes starting together (a worker
    declaring its queue, beat publishing to it) both insert it, one gets a UNIQUE violation on
    the queue's name, and Celery, calling that unrecoverable, stops the worker (seen in `make
    test`'s embedded run: no sends until it was restarted). Declared first by one process, the
    rows and the broker's tables exist before anyone races for them. Redis needs no rows:
    nothing is done there, so a Redis that is down at start is left to the children, which
    retry, instead of holding the parent."""
    if _on_redis(settings.broker_url):
        return
    app = make_celery(settings)
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for name in all_queues(settings):
            _own_queue(name)(channel).declare()  # type: ignore[no-untyped-call]


def make_celery(settings: Settings) -> Celery:
    broker_fix.install()
    _brisk_embedded_broker()
    app = Celery("outreach", include=TASK_MODULES)
    app.conf.update(celery_config(settings))
    return app
