"""What a booking change would send, worked out by making it and rolling it back.

Staff see the reminders and notices a book, reschedule or cancel will schedule before they
confirm it. The change runs through the same service call that the confirmation will make,
inside a transaction the caller rolls back, so the preview cannot disagree with the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.appointments.service import Change
from outreach.models import Message


@dataclass(frozen=True)
class WouldSend:
    due_at: datetime
    channel: str
    what: str


@dataclass(frozen=True)
class ChangePreview:
    action: str
    starts_at: datetime
    timezone: str
    sends: list[WouldSend] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cancelled: int = 0


def preview_change(session: Session, make_change: Callable[[Session], Change]) -> ChangePreview:
    """Run ``make_change`` and describe its effect. The caller must roll the session back."""
    change = make_change(session)
    messages: list[Message] = []
    if change.message_ids:
        query = select(Message).where(Message.id.in_(change.message_ids)).order_by(Message.due_at)
        messages = list(session.scalars(query))
    return ChangePreview(
        action=change.action,
        starts_at=change.appointment.starts_at,
        timezone=change.appointment.timezone,
        sends=[
            WouldSend(m.due_at, m.channel, (m.reminder_key or m.template or "notice").replace("_", " "))
            for m in messages
        ],
        skipped=[f"{_step_of(s.get('key', ''))}: {s.get('reason') or 'not needed'}" for s in change.skipped],
        cancelled=change.cancelled_messages,
    )


def _step_of(idempotency_key: str) -> str:
    """'appointment:7:reminder:24h:v2' -> '24h reminder'."""
    parts = idempotency_key.split(":")
    return f"{parts[3]} {parts[2]}" if len(parts) >= 5 else idempotency_key
