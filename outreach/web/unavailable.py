"""The database not answering (restarting, failing over, connections cut): 503, not a 500.

A request that needed the database while it was away gets ``503 Service Unavailable`` with
``Retry-After``, and the log gets one line naming the route's template and the error's type,
not a traceback: the driver's message may quote a statement, and the route's own path may
carry a token. Twilio tries the fallback URL configured for a failed inbound webhook; staff
and API clients see a plain "try again".
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def _database_unavailable(request: Request, exc: Exception) -> PlainTextResponse:
    log.error("database unavailable for %s %s (%s)", request.method, _template(request), type(exc).__name__)
    return PlainTextResponse(
        "The database is not answering just now. Please try again in a moment.\n",
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _template(request: Request) -> str:
    route = request.scope.get("route")  # FastAPI's routes say which they are
    if route is not None:
        return str(route.path)
    if "endpoint" in request.scope and request.scope.get("path_params") == {}:
        # A plain Starlette route (the webhooks) without parameters: its path is its template.
        return request.url.path
    return "an unmatched path"


def install(app: FastAPI) -> None:
    app.add_exception_handler(OperationalError, _database_unavailable)
