"""The web app as ``outreach serve`` runs it, built from the environment.

With OUTREACH_WEB_WORKERS above one, uvicorn starts each worker process from ``FACTORY`` (an
import string: an app object cannot cross into a new process), so each builds its own engine
and connection pool from the same settings.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from outreach.config import Settings, load_settings, refuse_public_secrets
from outreach.ops import logs
from outreach.web.app import create_app

FACTORY = "outreach.web.process:from_environment"


def from_environment() -> FastAPI:
    config = load_settings()
    refuse_public_secrets(config)
    logs.configure(config)
    return create_app(config)


def worker_count(settings: Settings, cpus: int | None = None) -> int:
    """OUTREACH_WEB_WORKERS, or one process per CPU: a web process is CPU-bound under a burst
    of webhooks (signature, form parsing, one insert each), so more than the CPUs only adds
    context switches."""
    if settings.web_workers:
        return settings.web_workers
    return cpus if cpus is not None else os.cpu_count() or 1
