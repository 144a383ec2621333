"""The Celery app: `celery -A worker worker` and `celery -A worker beat`.

Settings are read here, at the entry point. The broker carries message ids only; the
database is the schedule, so no task is ever given an ETA or countdown.
"""

from __future__ import annotations

import sys
from typing import Any

from celery.signals import celeryd_after_setup, setup_logging, worker_init, worker_process_init
from pydantic import ValidationError

from outreach import runtime
from outreach.celeryapp import make_celery, take_replies_lane
from outreach.config import (
    InsecureConfiguration,
    describe_invalid_settings,
    load_settings,
    refuse_public_secrets,
)
from outreach.ops import logs, metrics

try:
    settings = load_settings()
    refuse_public_secrets(settings)
except ValidationError as invalid:
    # One line, no traceback: the operator needs the variable's name, nothing else.
    sys.stderr.write(f"error: {describe_invalid_settings(invalid)}\n")
    raise SystemExit(2) from None
except InsecureConfiguration as exc:
    sys.stderr.write(f"error: refusing to start: {exc}\n")
    raise SystemExit(exc.exit_code) from None
app = make_celery(settings)
runtime.install(settings)


@setup_logging.connect
def _configure_logging(loglevel: str | int | None = None, **_: Any) -> None:
    # Connected, so Celery installs none of its own handlers: ours keep patient data out.
    logs.configure(settings, loglevel)


@celeryd_after_setup.connect
def _replies_with_sends(instance: Any, **_: Any) -> None:
    # A worker started with -Q <send queue> (docker compose, the README) takes the staff
    # answers' lane as well, ahead of the send queue.
    take_replies_lane(instance.app, settings)


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    metrics.serve_worker_metrics(settings.worker_metrics_port)


@worker_process_init.connect
def _rebuild_after_fork(**_: Any) -> None:
    # Pooled database connections must never cross a fork.
    runtime.install(settings)

