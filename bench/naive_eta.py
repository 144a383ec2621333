"""The naive baseline: one Celery task per message, held until its time with an ETA.

This is how Twilio's own appointment-reminder tutorial schedules texts, and exactly what the
outreach pipeline refuses to do (../shared/reference/celery.md §1.1): with the Redis broker
an ETA task is delivered at once, held in a worker's memory unacknowledged, and when its ETA
lies further out than the transport's ``visibility_timeout`` Redis hands it to another worker
as well, and again, so the text goes out several times. ``bench.delivery_bench`` runs two
workers of this app with a short visibility timeout and countdowns longer than it, and counts
the duplicates the sandbox accepted.

Only the benchmark uses it; ETAs and countdowns never appear in ``outreach/`` or ``tasks/``.
Workers read their settings (broker, queue, sandbox URL, credentials, sender) from the
environment like the real worker: ``celery -A bench.naive_eta worker``.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from twilio.rest import Client

from outreach.channels.twilio.client import make_client
from outreach.config import Settings, load_settings

SEND_TASK = "bench.naive_send_sms"
# Short on purpose (Celery's default is an hour): shorter than the countdowns the bench uses.
VISIBILITY_TIMEOUT = 5.0
RESTORE_INTERVAL = 1

_client: Client | None = None


def make_app(settings: Settings) -> Celery:
    """The naive app; the bench builds one to publish, the workers one to consume."""
    naive = Celery("naive_eta")
    naive.conf.update(
        broker_url=settings.broker_url,
        task_default_queue=settings.celery_queue,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            # kombu >= 5.7 sweeps for overdue unacked messages only every interval x throttle
            # (10 x 10 s) by default; a deployment with a short timeout tightens the sweep as
            # kombu's docs advise. The defaults only stretch the same duplication over a longer
            # horizon (an ETA a day out with the default 1 h timeout).
            "unacked_restore_interval": RESTORE_INTERVAL,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return naive


def recipient(n: int) -> str:
    """The fake number of message ``n`` (task arguments carry the index, never an address)."""
    return f"+1646{n:07d}"


def body(run: str, n: int) -> str:
    return f"Naive {run} #{n}: reminder of your visit tomorrow."


settings = load_settings()
app = make_app(settings)


@worker_process_init.connect  # type: ignore[untyped-decorator]  # celery ships no types
def _fresh_client(**_: Any) -> None:
    # A keep-alive HTTP session must not cross a fork.
    global _client
    _client = make_client(settings)


@app.task(name=SEND_TASK)  # type: ignore[untyped-decorator]
def send_sms(run: str, n: int) -> None:
    """Create the Twilio message now, as the tutorial's task does when its ETA arrives."""
    global _client
    if _client is None:
        _client = make_client(settings)
    _client.messages.create(to=recipient(n), from_=settings.twilio_from, body=body(run, n))
