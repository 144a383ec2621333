"""The web process: Twilio webhooks, unsubscribe pages, the JSON API, health check.

``create_app`` takes its settings and collaborators as arguments (tests pass their own);
``outreach serve`` builds them from the environment.
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
from outreach.web import api, inbound, status_webhook, unsubscribe


def create_app(
    settings: Settings,
    session_factory: sessionmaker[Session] | None = None,
    enqueue_inbound: Callable[[int], None] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    app = FastAPI(title="Clinic Outreach", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.session_factory = session_factory or make_session_factory(make_engine(settings.database_url))
    app.state.enqueue_inbound = enqueue_inbound or celery_enqueue_inbound(settings)
    app.include_router(status_webhook.router)
    app.include_router(inbound.router)
    app.include_router(unsubscribe.router)
    api.install(app, clock=clock)

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
