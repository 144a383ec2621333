"""GET /healthz and GET /metrics for the web process."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from outreach.celeryapp import all_queues
from outreach.config import Settings
from outreach.models import utcnow
from outreach.ops import health, metrics


def router(settings: Settings, factory: sessionmaker[Session]) -> APIRouter:
    routes = APIRouter()
    checks = {"database": health.database_check(factory), "broker": health.broker_check(settings.broker_url)}
    providers = health.provider_checks(settings)
    depth = metrics.broker_queue_depth(settings.broker_url, all_queues(settings))
    state = metrics.StateCollector(factory, utcnow, depth)

    @routes.get("/healthz")
    async def healthz(providers_too: bool = False) -> JSONResponse:
        """Each dependency on its own; ``?providers_too=true`` also tries Twilio and SMTP (not by
        default: a provider outage is no reason for an orchestrator to restart the web process)."""
        wanted = {**checks, **providers} if providers_too else checks
        body, healthy = await run_in_threadpool(health.report, wanted)
        return JSONResponse(body, status_code=200 if healthy else 503)

    @routes.get("/metrics")
    async def prometheus(request: Request) -> Response:
        token = settings.metrics_token.get_secret_value()
        client = request.client.host if request.client else None
        if not metrics.may_scrape(token, request.headers.get("Authorization"), client):
            return Response(
                "metrics: send the OUTREACH_METRICS_TOKEN as a bearer token (or scrape from this machine)",
                status_code=401 if token else 403,
                media_type="text/plain",
            )
        text = await run_in_threadpool(metrics.exposition, state)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return routes
