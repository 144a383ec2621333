"""How many web processes `outreach serve` runs, and what they must share when there are several.

One process answers webhooks, staff pages and the API on one core; a deployment whose send
rate brings more callbacks than that runs several (``OUTREACH_WEB_WORKERS``), all behind one
port (uvicorn's supervisor forks them and starts a new one if one dies). Everything they
answer from lives in the database, with two exceptions handled here:

* counters: each process counts into prometheus-client's files under
  ``PROMETHEUS_MULTIPROC_DIR``, so ``/metrics`` adds every process up whichever one Prometheus
  reaches. When the deployment set no directory, a fresh one is made for this serve;
* the clock: a fixed one (``OUTREACH_CLOCK``) becomes an offset, so every process reads the
  same instant however long each took to start.

The API's per-token rate limit is counted in each process (documented in docs/api.md).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, MutableMapping
from datetime import datetime

from fastapi import FastAPI

from outreach.clock import child_environment
from outreach.config import Settings, load_settings

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Automatic choice: half the cores (workers and the database want the rest), at most this.
AUTOMATIC_MAX = 4


def process_count(settings: Settings, cpus: int | None = None) -> int:
    """``OUTREACH_WEB_WORKERS`` when set; otherwise one for SQLite (one writer at a time: more
    processes would only queue on its lock) and half the cores, 1 to 4, for PostgreSQL."""
    if settings.web_workers:
        return settings.web_workers
    if not settings.database_url.startswith("postgresql"):
        return 1
    return max(1, min(AUTOMATIC_MAX, (cpus if cpus is not None else os.cpu_count() or 1) // 2))


def prepare_environment(env: MutableMapping[str, str], clock: Callable[[], datetime]) -> str | None:
    """Set what the processes about to start must share (see the module doc); returns the
    metrics directory when it made one (the caller removes it when they have stopped)."""
    made = None
    if not env.get(MULTIPROC_VARIABLE):
        made = env[MULTIPROC_VARIABLE] = tempfile.mkdtemp(prefix="outreach-web-metrics-")
    shared = child_environment(dict(env), clock)
    env.pop("OUTREACH_CLOCK", None)
    env.update(shared)
    return made


def app_from_environment() -> FastAPI:
    """The application as each of several web processes builds it (uvicorn's factory)."""
    from outreach.ops import logs
    from outreach.web.app import create_app

    settings = load_settings()
    logs.configure(settings)
    return create_app(settings)
