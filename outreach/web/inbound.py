"""POST /webhooks/twilio/sms: verify, store once, enqueue, answer at once.

Verify: the X-Twilio-Signature over OUTREACH_PUBLIC_BASE_URL + path (+ query) and the full form,
before anything is written (403 otherwise); then the fields' shapes (SIDs, sizes: 400 naming
the field), with control characters stripped so a body holding a NUL is still stored and
screened (``outreach.channels.twilio.callbacks``). Store: ``store_inbound`` in one transaction,
which also applies an opt-out or a crisis pause at once. Enqueue the processing task only after
the commit, so the task always finds the row; if enqueueing fails, the periodic sweep over
``unprocessed_inbound_ids`` picks the message up. Answer: empty TwiML; replies go through the
outbox like every other message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from outreach.channels.twilio.callbacks import InvalidCallback, parse_inbound_sms
from outreach.config import Settings
from outreach.db import transaction
from outreach.replies.inbound import MalformedInbound, StoreResult, store_inbound
from outreach.web.deps import get_clock, get_session_factory, get_settings
from outreach.web.signature import UnreadableForm, is_signed_by_twilio, signed_form

log = logging.getLogger(__name__)

router = APIRouter()

INBOUND_SMS_PATH = "/webhooks/twilio/sms"


def _plain(text: str, status_code: int) -> Response:
    return Response(text, status_code=status_code, media_type="text/plain")


@router.post(INBOUND_SMS_PATH)
async def twilio_inbound_sms(request: Request) -> Response:
    settings = get_settings(request)
    try:
        form = await signed_form(request)
    except UnreadableForm as exc:
        return _plain(str(exc), 400)
    if not is_signed_by_twilio(settings, request, form):
        return _plain("invalid or missing Twilio signature", 403)
    try:
        fields = parse_inbound_sms({key: values[-1] for key, values in form.items() if values})
    except InvalidCallback as exc:
        return _plain(f"inbound SMS: {exc}", 400)
    try:
        result = await run_in_threadpool(
            _store, get_session_factory(request), settings, fields, get_clock(request)()
        )
    except MalformedInbound as exc:
        return _plain(str(exc), 400)
    if result.needs_processing:
        enqueue: Callable[[int], None] = request.app.state.enqueue_inbound
        try:
            enqueue(result.inbound_id)
        except Exception:
            # Stored and committed: the sweep will process it. Twilio must not retry.
            log.warning("inbound %s stored but not enqueued; left for the sweep", result.inbound_id,
                        exc_info=True)
    return Response(result.twiml, media_type="text/xml")


def _store(
    factory: sessionmaker[Session], settings: Settings, fields: Mapping[str, str], now: datetime
) -> StoreResult:
    with transaction(factory) as session:
        return store_inbound(session, settings, fields, now)
