"""POST /webhooks/twilio/status: verify, normalise, store, answer.

The callback is stored, not applied: one row appended to ``pending_status_events`` in a
transaction shared with the callbacks arriving at the same moment (``group_commit``), and
the answer goes back once that commits. Applying it to its message is the worker's job
(``outreach.delivery.status.apply_pending``), so a callback for a message a sender holds
locked is answered at once instead of waiting for the sender, and the cost of a callback
here stays the same whatever state its message is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session, sessionmaker

from outreach.channels.twilio.callbacks import InvalidCallback, StatusEvent, parse_status_callback
from outreach.db import transaction
from outreach.delivery import status
from outreach.web.deps import get_clock, get_settings
from outreach.web.group_commit import GroupCommit
from outreach.web.signature import UnreadableForm, is_signed_by_twilio, signed_form

router = APIRouter()

Received = tuple[StatusEvent, datetime]


def status_writer(factory: sessionmaker[Session]) -> GroupCommit[Received]:
    def write(batch: Sequence[Received]) -> None:
        with transaction(factory) as session:
            status.store(session, batch)

    return GroupCommit(write, name="status-callbacks")


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
    writer: GroupCommit[Received] = request.app.state.status_writer
    await writer.write((event, get_clock(request)()))
    # 200 once stored, also for message ids we turn out not to know, so Twilio stops retrying.
    return Response(status_code=200)


# A plain Starlette route: FastAPI's per-request dependency and response handling, a
# tenth of a webhook's cost, does nothing for a form the handler reads itself.
router.add_route("/webhooks/twilio/status", twilio_status, methods=["POST"])
