"""POST /webhooks/twilio/status: verify, normalise, handle."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from outreach.delivery import status
from outreach.web.deps import get_clock
from outreach.web.signature import is_signed_by_twilio

router = APIRouter()


@router.post("/webhooks/twilio/status")
async def twilio_status(request: Request) -> Response:
    settings = request.app.state.settings
    raw = await request.form()
    form = {key: [str(v) for v in raw.getlist(key)] for key in raw}
    if not is_signed_by_twilio(settings, request, form):
        return Response("invalid signature", status_code=403, media_type="text/plain")
    try:
        event = status.normalise({k: v[-1] for k, v in form.items()}, request.query_params.get("c"))
    except status.InvalidCallback as exc:
        return Response(str(exc), status_code=400, media_type="text/plain")
    factory = request.app.state.session_factory
    with factory() as session, session.begin():
        status.handle(session, event, get_clock(request)())
    # 200 also for message ids we do not know, so Twilio stops retrying them.
    return Response(status_code=200)
