"""The Celery app: `celery -A worker worker` and `celery -A worker beat`.

Settings are read here, at the entry point. The broker carries message ids only; the
database is the schedule, so no task is ever given an ETA or countdown.
"""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging, worker_init, worker_process_init

from outreach import runtime
from outreach.celeryapp import make_celery
from outreach.config import load_settings
from outreach.ops import logs, metrics

settings = load_settings()
app = make_celery(settings)
runtime.install(settings)


@setup_logging.connect
def _configure_logging(loglevel: str | int | None = None, **_: Any) -> None:
    # Connected, so Celery installs none of its own handlers: ours keep patient data out.
    logs.configure(settings, loglevel)


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    metrics.serve_worker_metrics(settings.worker_metrics_port)


@worker_process_init.connect
def _rebuild_after_fork(**_: Any) -> None:
    # Pooled database connections must never cross a fork.
    runtime.install(settings)

