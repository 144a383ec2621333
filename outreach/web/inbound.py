"""POST /webhooks/twilio/sms: verify, screen, store once, enqueue, answer at once.

Verify: the X-Twilio-Signature over OUTREACH_PUBLIC_BASE_URL + path (+ query) and the full form,
before anything is written (403 otherwise); then the fields' shapes (SIDs, sizes: 400 naming
the field), with control characters stripped so a body holding a NUL is still stored and
screened (``outreach.channels.twilio.callbacks``). Screen: classified before anything is
written (``outreach.replies.inbound.screen``). Store: a plain text (neither an opt-out, an
opt-in nor crisis language) is appended in a transaction shared with the plain texts arriving
at the same moment (``group_commit``), locking no one; any other goes through
``store_inbound`` on its own, which applies the opt-out, opt-in or crisis pause in the same
transaction, so it holds before Twilio hears back. Enqueue the processing only after the
commit, so the task always finds the row, and off both the event loop and the group commit's
writer (a slow broker holds up no other request and no other batch); if enqueueing fails,
the periodic sweep over ``unprocessed_inbound_ids`` picks the message up. Answer: empty
TwiML; replies go through the outbox like every other message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from fastapi import APIRouter, FastAPI, Request, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from outreach.channels.twilio.callbacks import InvalidCallback, parse_inbound_sms
from outreach.config import Settings
from outreach.db import transaction
from outreach.replies.inbound import (
    EMPTY_TWIML,
    MalformedInbound,
    Screened,
    StoreResult,
    screen,
    store_inbound,
    store_plain,
)
from outreach.web.deps import get_clock, get_session_factory, get_settings
from outreach.web.group_commit import GroupCommit
from outreach.web.signature import UnreadableForm, is_signed_by_twilio, signed_form

log = logging.getLogger(__name__)

router = APIRouter()

INBOUND_SMS_PATH = "/webhooks/twilio/sms"

Received = tuple[Screened, datetime]
# Hands stored messages, by id, to processing (``outreach.celeryapp.PROCESS_INBOUND_MANY``).
Enqueue = Callable[[Sequence[int]], None]


def install_writer(app: FastAPI, factory: sessionmaker[Session]) -> None:
    """The plain texts' group commit, and the thread that hands what each batch stored to
    ``app.state.enqueue_inbound`` (read when it publishes: tests swap it); the app closes
    both at shutdown, the writer first.

    The hand-over has a thread of its own so that a slow or unreachable broker holds up
    neither the answers to the batch that was just committed nor the batches behind it: the
    writer only queues the ids. Ids that queue up while a publish is slow go out together."""

    def publish(batches: Sequence[Sequence[int]]) -> None:
        _hand_over(app.state.enqueue_inbound, [inbound_id for ids in batches for inbound_id in ids])

    handover: GroupCommit[Sequence[int]] = GroupCommit(publish, name="inbound-handover")

    def write(batch: Sequence[Received]) -> None:
        with transaction(factory) as session:
            ids = store_plain(session, batch)
        if ids:
            handover.submit(ids)

    app.state.inbound_writer = GroupCommit(write, name="inbound-replies")
    app.state.inbound_handover = handover


def _plain(text: str, status_code: int) -> Response:
    return Response(text, status_code=status_code, media_type="text/plain")


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
        screened = screen(fields)
    except InvalidCallback as exc:
        return _plain(f"inbound SMS: {exc}", 400)
    except MalformedInbound as exc:
        return _plain(str(exc), 400)
    if screened.plain:
        writer: GroupCommit[Received] = request.app.state.inbound_writer
        await writer.write((screened, get_clock(request)()))
        return Response(EMPTY_TWIML, media_type="text/xml")
    result = await run_in_threadpool(
        _store, get_session_factory(request), settings, fields, get_clock(request)()
    )
    # Handed over after the answer and in the thread pool: publishing waits on the broker,
    # which must hold up neither Twilio's answer nor, on the event loop, every other request.
    handover = (
        BackgroundTask(_hand_over, request.app.state.enqueue_inbound, [result.inbound_id])
        if result.needs_processing
        else None
    )
    return Response(result.twiml, media_type="text/xml", background=handover)


# A plain Starlette route: FastAPI's per-request dependency and response handling, a
# tenth of a webhook's cost, does nothing for a form the handler reads itself.
router.add_route(INBOUND_SMS_PATH, twilio_inbound_sms, methods=["POST"])


def _hand_over(enqueue: Enqueue, inbound_ids: Sequence[int]) -> None:
    if not inbound_ids:
        return
    try:
        enqueue(inbound_ids)
    except Exception:
        # Stored and committed: the sweep will process them. Twilio must not retry.
        log.warning("inbound %s stored but not enqueued; left for the sweep",
                    ", ".join(map(str, inbound_ids)), exc_info=True)


def _store(
    factory: sessionmaker[Session], settings: Settings, fields: Mapping[str, str], now: datetime
) -> StoreResult:
    with transaction(factory) as session:
        return store_inbound(session, settings, fields, now)
