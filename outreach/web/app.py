"""The web process: the staff web app, Twilio webhooks, unsubscribe pages, health check.

``create_app`` takes its settings and collaborators as arguments (tests pass their own, and a
fixed ``clock``); ``outreach serve`` builds them from the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from outreach.celeryapp import PROCESS_INBOUND, make_celery
from outreach.config import Settings
from outreach.db import make_engine, make_session_factory
from outreach.models import utcnow
from outreach.web import inbound, status_webhook, unsubscribe
from outreach.web.staff import app as staff_app


def create_app(
    settings: Settings,
    session_factory: sessionmaker[Session] | None = None,
    enqueue_inbound: Callable[[int], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    app = FastAPI(title="Clinic Outreach", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.session_factory = session_factory or make_session_factory(make_engine(settings.database_url))
    app.state.enqueue_inbound = enqueue_inbound or celery_enqueue_inbound(settings)
    # What the staff pages take as "now" (sessions' idle time, today's appointments, audit rows).
    app.state.clock = clock
    app.include_router(status_webhook.router)
    app.include_router(inbound.router)
    app.include_router(unsubscribe.router)
    staff_app.mount(app)

    @app.get("/healthz")
    def healthz(request: Request) -> JSONResponse:
        factory: sessionmaker[Session] = request.app.state.session_factory
        try:
            with factory() as session:
                session.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app


def celery_enqueue_inbound(settings: Settings) -> Callable[[int], None]:
    """Publish inbound processing by task name: the web process runs no tasks itself."""
    celery = make_celery(settings)

    def enqueue(inbound_id: int) -> None:
        celery.send_task(PROCESS_INBOUND, args=[inbound_id])

    return enqueue
