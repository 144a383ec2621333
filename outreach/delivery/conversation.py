"""The conversation window: a staff reply may go outside the automated sending window for a
while after the patient's own message. Read by the send-time checks and by the staff inbox
(which tells staff whether their reply goes at once)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach.models import InboundMessage
from outreach.outbox.idsets import IdSets


def conversational_window_open(last_inbound_at: datetime | None, now: datetime, hours: float) -> bool:
    """Whether a staff reply may go out now even outside the automated sending window.

    The rule: within ``hours`` (Settings.conversational_window_hours) of the patient's own
    latest message. Inside the automated window conversational messages go out anyway.
    Consent is checked separately (never to an opted-out number).
    """
    if last_inbound_at is None:
        return False
    return timedelta(0) <= now - last_inbound_at <= timedelta(hours=hours)


def last_inbound_at(session: Session, phone: str) -> datetime | None:
    """When this number last wrote to us."""
    return last_inbound_times(session, [phone]).get(phone)


def last_inbound_times(session: Session, phones: Sequence[str]) -> dict[str, datetime]:
    """When each of these numbers last wrote to us (numbers that never did are absent)."""
    if not phones:
        return {}
    sets = IdSets(session)
    rows = session.execute(
        select(InboundMessage.from_address, func.max(InboundMessage.received_at))
        .where(sets.among(InboundMessage.from_address, phones))
        .group_by(InboundMessage.from_address)
    )
    # An aggregate can lose the column's type on SQLite: the value is stored as UTC.
    return {phone: at if at.tzinfo is not None else at.replace(tzinfo=UTC) for phone, at in rows}
