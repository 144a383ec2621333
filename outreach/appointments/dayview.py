"""The staff day view: each visit of a local day, its confirmation state and what happens to
each of its messages, in plain words with times in the clinic's zone (``--json`` keeps the
ISO-8601 instants beside them)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.appointments.materialise import confirms_of
from outreach.appointments.service import describe
from outreach.delivery.views import at, outcome
from outreach.models import Appointment, AppointmentStatus, Contact, Message, MessageState

SENT_STATES = frozenset(str(s) for s in (MessageState.SENT, MessageState.DELIVERED))
PENDING = frozenset(str(s) for s in (MessageState.SCHEDULED, MessageState.QUEUED, MessageState.SENDING))


def day_view(session: Session, day: date, zone: ZoneInfo) -> list[dict[str, Any]]:
    """Visits starting on ``day`` (local to ``zone``, the clinic's), in start order."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    rows = session.execute(
        select(Appointment, Contact)
        .join(Contact, Contact.id == Appointment.contact_id)
        .where(Appointment.starts_at >= start, Appointment.starts_at < end)
        .order_by(Appointment.starts_at, Appointment.id)
    ).all()
    ids = [a.id for a, _ in rows]
    messages: dict[int, list[Message]] = {}
    if ids:
        for message in session.scalars(
            select(Message).where(Message.appointment_id.in_(ids)).order_by(Message.due_at, Message.id)
        ):
            messages.setdefault(message.appointment_id or 0, []).append(message)
    return [_entry(a, c, messages.get(a.id, []), zone) for a, c in rows]


def _entry(
    appointment: Appointment, contact: Contact, messages: list[Message], zone: ZoneInfo
) -> dict[str, Any]:
    entry = describe(appointment)
    entry["contact_name"] = contact.full_name
    entry["confirmation"] = confirmation_state(appointment, messages, zone, contact.automation_paused_at)
    entry["messages"] = [_message(m, contact, zone) for m in messages]
    return entry


def confirmation_state(
    appointment: Appointment, messages: list[Message], zone: ZoneInfo, paused_at: datetime | None = None
) -> str:
    """One phrase for the front desk: confirmed, requested (and how far the request got), the
    request to come (when, or held until when), or not requested and why."""
    if appointment.status == AppointmentStatus.CONFIRMED:
        return f"confirmed {at(appointment.confirmed_at, zone)}" if appointment.confirmed_at else "confirmed"
    if appointment.status == AppointmentStatus.RESCHEDULE_REQUESTED:
        return "patient asked to reschedule"
    if appointment.status != AppointmentStatus.BOOKED:
        return str(appointment.status)
    current = [m for m in messages if m.appointment_version == appointment.version and _asks(m, appointment)]
    sent = [m for m in current if m.state in SENT_STATES]
    if sent:
        return f"requested ({outcome(sent[-1], zone)}), no answer yet"
    pending = [m for m in current if m.state in PENDING]
    if pending:
        return f"request {outcome(pending[0], zone, paused_at)}"
    if current:
        return f"not requested ({outcome(current[-1], zone)}); confirm by phone"
    return "not requested (confirm by phone)"


def _asks(message: Message, appointment: Appointment) -> bool:
    return any(pair[0] == appointment.id for pair in confirms_of(message))


def _message(message: Message, contact: Contact, zone: ZoneInfo) -> dict[str, Any]:
    own = ZoneInfo(contact.timezone)
    return {
        "id": message.id,
        "reminder": message.reminder_key,
        "version": message.appointment_version,
        "channel": message.channel,
        "state": message.state,
        "reason": message.state_reason,
        "outcome": outcome(message, zone, contact.automation_paused_at),
        "due_at": message.due_at.isoformat(),
        "local_due_at": message.due_at.astimezone(own).isoformat(),
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
    }


def between(
    session: Session, start: datetime, end: datetime, *, after_id: int | None = None, limit: int = 100
) -> list[Appointment]:
    """Visits starting in [start, end), in start order (then id). ``after_id`` continues after
    that visit, for paging: the order is by (start, id), so the page boundary is exact."""
    query = select(Appointment).where(Appointment.starts_at >= start, Appointment.starts_at < end)
    if after_id is not None:
        anchor = session.get(Appointment, after_id)
        if anchor is not None:
            query = query.where(
                (Appointment.starts_at > anchor.starts_at)
                | ((Appointment.starts_at == anchor.starts_at) & (Appointment.id > anchor.id))
            )
    return list(session.scalars(query.order_by(Appointment.starts_at, Appointment.id).limit(limit)))
