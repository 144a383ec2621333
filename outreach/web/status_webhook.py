"""POST /webhooks/twilio/status: verify, normalise, store, answer.

The request only appends the callback to the status inbox (``outreach.delivery.ingest``),
through the process's group-commit writer (``outreach.web.status_writer``): no lock on the
message, so a callback for a message whose sender is still waiting on Twilio is answered at
once, and the cost per callback is the same for every message. The ``outreach.apply_status``
task applies stored callbacks to their messages in batches.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import SQLAlchemyError

from outreach.channels.twilio.callbacks import InvalidCallback, parse_status_callback
from outreach.web.deps import get_clock, get_session_factory, get_settings
from outreach.web.signature import UnreadableForm, is_signed_by_twilio, signed_form
from outreach.web.status_writer import writer_for

log = logging.getLogger(__name__)

router = APIRouter()


@router.post("/webhooks/twilio/status")
async def twilio_status(request: Request) -> Response:
    settings = get_settings(request)
    try:
        form = await signed_form(request)
    except UnreadableForm as exc:
        return Response(str(exc), status_code=400, media_type="text/plain")
    if not is_signed_by_twilio(settings, request, form):
        return Response("invalid signature", status_code=403, media_type="text/plain")
    try:
        event = parse_status_callback(
            {k: v[-1] for k, v in form.items() if v}, request.query_params.get("c")
        )
    except InvalidCallback as exc:
        return Response(f"status callback: {exc}", status_code=400, media_type="text/plain")
    writer = writer_for(request.app.state, get_session_factory(request))
    try:
        await writer.store(event, get_clock(request)())
    except SQLAlchemyError:
        log.warning("status callback not stored; Twilio will retry it", exc_info=True)
        return Response("not stored, try again", status_code=503, media_type="text/plain")
    # 200 also for message ids we do not know (the applier drops those), so Twilio stops retrying.
    return Response(status_code=200)
