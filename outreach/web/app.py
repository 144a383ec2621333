"""The web process: Twilio webhooks, unsubscribe pages, health check and metrics.

``create_app`` takes its settings and collaborators as arguments (tests pass their own);
``outreach serve`` builds them from the environment.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from outreach import clock
from outreach.celeryapp import PROCESS_INBOUND, make_celery
from outreach.config import Settings
from outreach.db import make_engine, make_session_factory
from outreach.ops import routes as ops_routes
from outreach.web import inbound, status_webhook, unsubscribe
from outreach.web.limits import BodySizeLimit


def create_app(
    settings: Settings,
    session_factory: sessionmaker[Session] | None = None,
    enqueue_inbound: Callable[[int], None] | None = None,
) -> FastAPI:
    app = FastAPI(title="Clinic Outreach", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodySizeLimit)
    app.state.settings = settings
    app.state.clock = clock.from_settings(settings)
    app.state.session_factory = session_factory or make_session_factory(make_engine(settings.database_url))
    app.state.enqueue_inbound = enqueue_inbound or celery_enqueue_inbound(settings)
    app.include_router(status_webhook.router)
    app.include_router(inbound.router)
    app.include_router(unsubscribe.router)

    app.include_router(ops_routes.router(settings, app.state.session_factory))
    return app


def celery_enqueue_inbound(settings: Settings) -> Callable[[int], None]:
    """Publish inbound processing by task name: the web process runs no tasks itself."""
    celery = make_celery(settings)

    def enqueue(inbound_id: int) -> None:
        celery.send_task(PROCESS_INBOUND, args=[inbound_id])

    return enqueue
