"""The web process: the staff web app, the JSON API, Twilio webhooks, unsubscribe pages, health
check, metrics.

``create_app`` takes its settings and collaborators as arguments (tests pass their own, and a
fixed ``clock``); ``outreach serve`` builds them from the environment.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from outreach import clock as process_clock
from outreach.celeryapp import PROCESS_INBOUND_MANY, inbound_batches, make_celery
from outreach.config import Settings
from outreach.db import make_engine, make_session_factory
from outreach.ops import routes as ops_routes
from outreach.web import api, inbound, status_webhook, unavailable, unsubscribe
from outreach.web.limits import BodySizeLimit
from outreach.web.staff import app as staff_app
from outreach.web.staff import contact_files


def create_app(
    settings: Settings,
    session_factory: sessionmaker[Session] | None = None,
    enqueue_inbound: inbound.Enqueue | None = None,
    clock: Callable[[], datetime] | None = None,
    uploads_dir: Path | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Clinic Outreach",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_lifespan,
        # No OpenTelemetry here (and no request paths, which carry tokens, in anyone's traces);
        # left on, FastAPI looks for a tracer in the environment on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_middleware(BodySizeLimit)
    app.state.settings = settings
    # What the process takes as "now": webhooks, staff pages (idle time, today's appointments),
    # audit rows. Tests pass a fixed one; OUTREACH_CLOCK fixes it for a whole process.
    app.state.clock = clock or process_clock.from_settings(settings)
    app.state.session_factory = session_factory or make_session_factory(make_engine(settings.database_url))
    app.state.enqueue_inbound = enqueue_inbound or celery_enqueue_inbound(settings)
    app.state.status_writer = status_webhook.status_writer(app.state.session_factory)
    inbound.install_writer(app, app.state.session_factory)
    # Contact files previewed in the staff app, until imported (an hour at most).
    app.state.uploads_dir = uploads_dir or contact_files.DEFAULT_UPLOADS
    app.include_router(status_webhook.router)
    app.include_router(inbound.router)
    app.include_router(unsubscribe.router)
    staff_app.mount(app)
    api.install(app, clock=app.state.clock)

    app.include_router(ops_routes.router(settings, app.state.session_factory))
    unavailable.install(app)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Everything loaded so far (the app, its routes, templates, libraries) lives as long as the
    # process: frozen, the collector stops walking it. Unfrozen, each full collection walked it
    # all and stalled every request in flight for 130-150 ms, about once a second under load
    # (bench/webhook_bench.py: status callbacks p99 131 -> 21 ms).
    gc.collect()
    gc.freeze()
    yield
    # Callbacks already queued are written (and answered) before the process goes.
    app.state.status_writer.close()
    app.state.inbound_writer.close()
    app.state.inbound_handover.close()


def celery_enqueue_inbound(settings: Settings) -> inbound.Enqueue:
    """Publish inbound processing by task name: the web process runs no tasks itself."""
    celery = make_celery(settings)

    def enqueue(inbound_ids: Sequence[int]) -> None:
        for batch in inbound_batches(inbound_ids):
            celery.send_task(PROCESS_INBOUND_MANY, args=[batch])

    return enqueue
