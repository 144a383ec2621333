"""Helpers for the appointments tests: local times, message lookups, a "sent" request."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.models import InboundClass, InboundMessage, Message, MessageState
from outreach.replies.classify import Classification

LA = ZoneInfo("America/Los_Angeles")
_sids = count(1)


def la(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LA).astimezone(UTC)


def messages_of(session: Session, appointment_id: int) -> dict[str, Message]:
    rows = session.scalars(select(Message).where(Message.appointment_id == appointment_id)).all()
    return {m.idempotency_key: m for m in rows}


def mark_sent(session: Session, key: str, at: datetime) -> Message:
    """What the sender does to a message it handed to the provider (for reply-binding tests)."""
    message = session.scalars(select(Message).where(Message.idempotency_key == key)).one()
    message.state = str(MessageState.SENT)
    message.sent_at = at
    session.flush()
    return message


def inbound(session: Session, phone: str, body: str, at: datetime) -> InboundMessage:
    row = InboundMessage(
        provider_sid=f"SMin{next(_sids):030d}",
        from_address=phone,
        to_address="+15005550006",
        body=body,
        received_at=at,
    )
    session.add(row)
    session.flush()
    return row


CONFIRM = Classification(InboundClass.CONFIRM, "digit:1")
RESCHEDULE = Classification(InboundClass.RESCHEDULE, "digit:2")
