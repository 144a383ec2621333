"""The JSON API under /api/v1 for integrations (an EHR, a booking system, scripts).

Bearer tokens (``outreach tokens add``), one transaction and one audit event per call, the
same service functions as the CLI. Its OpenAPI description is served at /openapi.json and
covers the API only (webhooks and staff pages are not part of it). See docs/api.md.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from outreach.models import utcnow
from outreach.web.api import appointments, campaigns, contacts, fhir, inbox, messages
from outreach.web.api.core import Clock, Limits, TokenBucket

API_VERSION = "1.0.0"

router = APIRouter(prefix="/api/v1")
for area in (contacts, appointments, campaigns, messages, inbox, fhir):
    router.include_router(area.router)


@cache
def openapi_bytes() -> bytes:
    """The document as served: built once a process (it depends on the routes alone), not at
    each app's creation, where it was most of the cost (of every test's app too)."""
    return json.dumps(openapi_document(), ensure_ascii=False, separators=(",", ":")).encode()


def openapi_document() -> dict[str, Any]:
    return get_openapi(
        title="Clinic Outreach API",
        version=API_VERSION,
        description=(
            "Contacts, consent, enrollments, appointments, messages and the staff inbox. "
            "Send `Authorization: Bearer <token>` (tokens come from `outreach tokens add NAME`)."
        ),
        routes=router.routes,
    )


def install(app: FastAPI, *, clock: Clock | None = None, limits: Limits | None = None) -> None:
    """Add /api/v1 and /openapi.json to the web app; ``clock`` fixes the API's `now` in tests."""
    chosen = limits or Limits()
    app.state.clock = clock or utcnow
    app.state.api_limits = chosen
    app.state.api_bucket = TokenBucket(chosen.rate_per_second, chosen.burst)
    app.include_router(router)
    document = openapi_bytes()

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response:
        return Response(document, media_type="application/json")
