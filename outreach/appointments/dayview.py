"""The staff day view: each visit of a local day with its confirmation state and what was sent."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.appointments.materialise import confirms_of
from outreach.appointments.service import describe
from outreach.models import Appointment, AppointmentStatus, Contact, Message, MessageState

SENT_STATES = frozenset(str(s) for s in (MessageState.SENT, MessageState.DELIVERED))


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
    return [_entry(a, c, messages.get(a.id, [])) for a, c in rows]


def _entry(appointment: Appointment, contact: Contact, messages: list[Message]) -> dict[str, Any]:
    entry = describe(appointment)
    entry["contact_name"] = contact.full_name
    entry["confirmation"] = confirmation_state(appointment, messages)
    entry["messages"] = [_message(m, contact) for m in messages]
    return entry


def confirmation_state(appointment: Appointment, messages: list[Message]) -> str:
    """One phrase for the front desk: confirmed / requested / not requested yet / …"""
    if appointment.status == AppointmentStatus.CONFIRMED:
        return "confirmed"
    if appointment.status == AppointmentStatus.RESCHEDULE_REQUESTED:
        return "patient asked to reschedule"
    if appointment.status != AppointmentStatus.BOOKED:
        return str(appointment.status)
    current = [m for m in messages if m.appointment_version == appointment.version and _asks(m, appointment)]
    sent = [m for m in current if m.state in SENT_STATES]
    if sent:
        return "requested, no answer yet"
    if any(m.state in (MessageState.SCHEDULED, MessageState.QUEUED, MessageState.SENDING) for m in current):
        return "request scheduled"
    return "not requested (confirm by phone)"


def _asks(message: Message, appointment: Appointment) -> bool:
    return any(pair[0] == appointment.id for pair in confirms_of(message))


def _message(message: Message, contact: Contact) -> dict[str, Any]:
    zone = ZoneInfo(contact.timezone)
    return {
        "id": message.id,
        "reminder": message.reminder_key,
        "version": message.appointment_version,
        "channel": message.channel,
        "state": message.state,
        "reason": message.state_reason,
        "due_at": message.due_at.isoformat(),
        "local_due_at": message.due_at.astimezone(zone).isoformat(),
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
