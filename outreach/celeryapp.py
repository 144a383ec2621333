"""The Celery application, built from settings. The worker and beat use it through worker.py;
the web process and the CLI use it only to publish tasks by name."""

from __future__ import annotations

from typing import Any

from celery import Celery

from outreach.config import Settings

TASK_MODULES = ["tasks.delivery", "tasks.replies"]
PROCESS_INBOUND = "outreach.process_inbound"
DISPATCH_DUE = "outreach.dispatch_due"


def celery_config(settings: Settings) -> dict[str, Any]:
    import scheduler  # the beat entries live at the top level, beside worker.py

    return {
        "broker_url": settings.broker_url,
        "task_default_queue": settings.celery_queue,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # At-least-once delivery of a task; the outbox's conditional updates make it safe.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport_options(settings.broker_url),
        "task_time_limit": 300,
        "task_soft_time_limit": 240,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": scheduler.BEAT_SCHEDULE,
    }


def transport_options(broker_url: str) -> dict[str, Any]:
    if broker_url.startswith(("redis://", "rediss://")):
        # Longer than any task can run, so Redis never re-delivers a task still in progress.
        return {"visibility_timeout": 3600}
    # The embedded broker (kombu's SQLAlchemy transport on a SQLite file) polls; keep it brisk.
    return {}


def make_celery(settings: Settings) -> Celery:
    app = Celery("outreach", include=TASK_MODULES)
    app.conf.update(celery_config(settings))
    return app
