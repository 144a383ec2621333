"""Read-only views of the outbox for the CLI, the staff web app and the JSON API.

Every row says what will actually happen to the message (``outcome``): when it goes, until
when and why it is held, or why it did not go, with times in the zone staff read (the
clinic's); the ISO-8601 instants stay beside it for ``--json``.
"""

from __future__ import annotations

import csv
from datetime import datetime
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from outreach import timefmt
from outreach.contacts.csvformat import escape_cell
from outreach.errors import NotFound
from outreach.models import Campaign, Contact, Enrollment, Message, MessageKind, MessageState


def at(instant: datetime | None, zone: ZoneInfo) -> str:
    """``Tue 10 Jun 2026, 08:00 Pacific``: the words staff read for an instant everywhere
    (``outreach.timefmt.local``)."""
    if instant is None:
        return "(time not recorded)"
    return timefmt.local(instant, zone)


def outcome(message: Message, zone: ZoneInfo, paused_at: datetime | None = None) -> str:
    """What happens, or happened, to one message, as the front desk should read it."""
    state = message.state
    reason = message.state_reason or "no reason recorded"
    if state == MessageState.DELIVERED:
        return f"delivered (sent {at(message.sent_at, zone)})"
    if state == MessageState.SENT:
        return f"sent {at(message.sent_at, zone)}"
    if state in (MessageState.QUEUED, MessageState.SENDING):
        return "being sent now"
    if state == MessageState.SCHEDULED:
        if paused_at is not None and message.kind == MessageKind.AUTOMATED:
            # The send-time check holds it (crisis pause) however near its due time is.
            return (
                f"held: automation paused for this patient since {at(paused_at, zone)} until staff clear it"
            )
        if message.state_reason:
            return f"held until {at(message.due_at, zone)}: {message.state_reason}"
        return f"goes {at(message.due_at, zone)}"
    if state == MessageState.UNKNOWN:
        return "outcome unknown: being checked with the provider"
    return f"{state}: {reason}"


def _summary(
    message: Message, zone: ZoneInfo | None, staff_zone: ZoneInfo | None, paused_at: datetime | None
) -> dict[str, Any]:
    return {
        "id": message.id,
        "contact_id": message.contact_id,
        "channel": message.channel,
        "category": message.category,
        "kind": message.kind,
        "template": message.template,
        "due_at": message.due_at.isoformat(),
        "local_due_at": message.due_at.astimezone(zone).isoformat() if zone else None,
        "state": message.state,
        "state_reason": message.state_reason,
        "outcome": outcome(message, staff_zone or zone or ZoneInfo("UTC"), paused_at),
        "attempts": message.attempts,
        "idempotency_key": message.idempotency_key,
    }


MessageOrder = Literal["due", "created", "newest"]
_ORDERS: dict[str, tuple[ColumnElement[Any] | InstrumentedAttribute[Any], ...]] = {
    "due": (Message.due_at, Message.id),
    "created": (Message.id,),
    "newest": (Message.id.desc(),),
}


def list_messages(
    session: Session,
    *,
    contact_id: int | None = None,
    state: str | None = None,
    campaign: str | None = None,
    channel: str | None = None,
    due_from: datetime | None = None,
    due_until: datetime | None = None,
    after_id: int | None = None,
    limit: int | None = 200,
    offset: int = 0,
    order: MessageOrder = "due",
    staff_zone: ZoneInfo | None = None,
) -> list[dict[str, Any]]:
    """Messages by due time (then id), newest schedule last; filters combine. ``due_from``
    is inclusive, ``due_until`` exclusive. ``after_id`` continues after that message in this
    order (the API's cursor). ``order`` "created" lists them as they were scheduled (by id),
    "newest" the other way: the primary key serves those orders, where due time has no index
    over all rows (ordering a million messages by due time sorts them all, a third of a
    second). ``outcome`` times are in ``staff_zone`` (the clinic's; default each recipient's
    own)."""
    if state is not None and state not in {str(s) for s in MessageState}:
        raise NotFound(f"unknown message state {state!r}; one of {', '.join(s.value for s in MessageState)}")
    query = (
        select(Message, Contact.timezone, Contact.automation_paused_at)
        .outerjoin(Contact, Contact.id == Message.contact_id)
        .order_by(*_ORDERS[order])
        .limit(limit)
        .offset(offset)
    )
    if channel is not None:
        query = query.where(Message.channel == channel)
    if due_from is not None:
        query = query.where(Message.due_at >= due_from)
    if due_until is not None:
        query = query.where(Message.due_at < due_until)
    if contact_id is not None:
        query = query.where(Message.contact_id == contact_id)
    if state is not None:
        query = query.where(Message.state == state)
    if after_id is not None:
        query = query.where(_after(session, order, after_id))
    if campaign is not None:
        query = (
            # Through the contact too: messages have no index on enrollment_id, and
            # ix_messages_contact_state serves the join this way.
            query.join(
                Enrollment,
                and_(Enrollment.id == Message.enrollment_id, Enrollment.contact_id == Message.contact_id),
            )
            .join(Campaign, Campaign.id == Enrollment.campaign_id)
            .where(Campaign.slug == campaign)
        )
    return [
        _summary(message, ZoneInfo(tz) if tz else None, staff_zone, paused_at)
        for message, tz, paused_at in session.execute(query)
    ]


def _after(session: Session, order: MessageOrder, message_id: int) -> ColumnElement[bool]:
    """What comes after that message in ``order``: by id alone, or by its due time then id (an
    unknown message starts the list over, as an empty cursor would)."""
    if order == "created":
        return Message.id > message_id
    if order == "newest":
        return Message.id < message_id
    anchor = session.get(Message, message_id)
    if anchor is None:
        return true()
    return (Message.due_at > anchor.due_at) | ((Message.due_at == anchor.due_at) & (Message.id > anchor.id))


def message_detail(session: Session, message_id: int, staff_zone: ZoneInfo | None = None) -> dict[str, Any]:
    """One message with its attempts and provider events (the delivery log). No body text:
    the log is for staff tracing delivery, and bodies are patient data."""
    message = session.get(Message, message_id)
    if message is None:
        raise NotFound(f"no message with id {message_id}")
    contact = session.get(Contact, message.contact_id) if message.contact_id is not None else None
    paused_at = contact.automation_paused_at if contact else None
    detail = _summary(message, ZoneInfo(contact.timezone) if contact else None, staff_zone, paused_at)
    detail.update(
        {
            "enrollment_id": message.enrollment_id,
            "step_key": message.step_key,
            "appointment_id": message.appointment_id,
            "not_after": message.not_after.isoformat() if message.not_after else None,
            "provider_id": message.provider_id,
            "provider_status": message.provider_status,
            "error_code": message.error_code,
            "segments": message.segments,
            "price": message.price,
            "sent_at": message.sent_at.isoformat() if message.sent_at else None,
            "attempts_log": [
                {
                    "number": a.number,
                    "started_at": a.started_at.isoformat(),
                    "finished_at": a.finished_at.isoformat() if a.finished_at else None,
                    "outcome": a.outcome,
                    "error_code": a.error_code,
                    "detail": a.detail,
                    "provider_id": a.provider_id,
                }
                for a in message.attempts_log
            ],
            "events": [
                {
                    "status": e.status,
                    "error_code": e.error_code,
                    "received_at": e.received_at.isoformat(),
                    "payload": e.payload,
                }
                for e in message.events
            ],
        }
    )
    return detail


CSV_COLUMNS = (
    "id",
    "contact_id",
    "channel",
    "category",
    "kind",
    "template",
    "due_at",
    "local_due_at",
    "state",
    "state_reason",
    "attempts",
    "idempotency_key",
)


def export_messages_csv(out: IO[str], rows: list[dict[str, Any]]) -> int:
    """``list_messages`` rows as CSV (UTC and local ISO-8601 times; no message text)."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([escape_cell("" if row[c] is None else str(row[c])) for c in CSV_COLUMNS])
    return len(rows)
