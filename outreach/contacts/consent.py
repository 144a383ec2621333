"""The consent ledger: current state per contact, channel and category, plus append-only evidence.

Every change goes through ``record``, which appends a ``ConsentEvent`` and then moves the
current ``Consent`` row; nothing ever edits or deletes an event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.models import (
    Category,
    Channel,
    Consent,
    ConsentEvent,
    ConsentSource,
    ConsentState,
)

ConsentView = Literal["granted", "revoked", "none"]


def view_of(state: str | None) -> ConsentView:
    """A consent row's state as staff and the checks see it; ``None`` is no row at all."""
    if state is None:
        return "none"
    return "granted" if state == ConsentState.GRANTED else "revoked"


@dataclass(frozen=True)
class Evidence:
    """How a consent change came about: what was shown or said, by which route, by whom."""

    source: ConsentSource
    wording: str = ""
    recorded_by: str = "system"
    inbound_message_id: int | None = None
    # When it happened, on the caller's clock (a process's may be fixed: OUTREACH_CLOCK).
    occurred_at: datetime = field(kw_only=True)


def record(
    session: Session,
    contact_id: int,
    channel: Channel | str,
    category: Category | str,
    state: ConsentState,
    evidence: Evidence,
) -> ConsentEvent:
    """Append one ledger event and make it the current state."""
    at = evidence.occurred_at
    event = ConsentEvent(
        contact_id=contact_id,
        channel=str(channel),
        category=str(category),
        state=str(state),
        source=str(evidence.source),
        evidence=evidence.wording,
        recorded_by=evidence.recorded_by,
        occurred_at=at,
        inbound_message_id=evidence.inbound_message_id,
    )
    session.add(event)
    session.flush()
    current = session.get(Consent, (contact_id, str(channel), str(category)))
    if current is None:
        session.add(
            Consent(
                contact_id=contact_id,
                channel=str(channel),
                category=str(category),
                state=str(state),
                updated_at=at,
                event_id=event.id,
            )
        )
    else:
        current.state = str(state)
        current.updated_at = at
        current.event_id = event.id
    return event


def grant(
    session: Session,
    contact_id: int,
    channel: Channel | str,
    categories: Iterable[Category | str],
    evidence: Evidence,
) -> None:
    for category in categories:
        record(session, contact_id, channel, category, ConsentState.GRANTED, evidence)


def revoke(
    session: Session,
    contact_id: int,
    channel: Channel | str,
    categories: Iterable[Category | str],
    evidence: Evidence,
) -> list[str]:
    """Revoke the given categories; returns the ones that were granted until now."""
    categories = list(categories)
    was_granted = [
        str(c) for c in categories if state_of(session, contact_id, channel, c) == "granted"
    ]
    # One instant for the whole batch (the evidence's): it is one opt-out, and restoring relies on that.
    for category in categories:
        record(session, contact_id, channel, category, ConsentState.REVOKED, evidence)
    return was_granted


def state_of(
    session: Session, contact_id: int, channel: Channel | str, category: Category | str
) -> ConsentView:
    row = session.get(Consent, (contact_id, str(channel), str(category)))
    return view_of(row.state if row is not None else None)


def has_consent(
    session: Session, contact_id: int, channel: Channel | str, category: Category | str
) -> bool:
    return state_of(session, contact_id, channel, category) == "granted"


def summary(session: Session, contact_id: int) -> dict[str, dict[str, ConsentView]]:
    """``{"sms": {"care": "granted", ...}, "email": {...}}`` for every channel and category."""
    view: dict[str, dict[str, ConsentView]] = {
        str(ch): {str(cat): "none" for cat in Category} for ch in Channel
    }
    for row in session.scalars(select(Consent).where(Consent.contact_id == contact_id)):
        view[row.channel][row.category] = view_of(row.state)
    return view


def granted_before_last_revocation(
    session: Session, contact_id: int, channel: Channel | str
) -> list[str]:
    """The categories that were granted just before the channel's most recent opt-out.

    Used by opt-in keywords (START): a patient who opts back in gets back what they had,
    never more. An opt-out is the latest batch of events (one instant) that turned any
    granted category to revoked, so a second STOP does not hide what the first one took.
    """
    events = session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.contact_id == contact_id, ConsentEvent.channel == str(channel))
        .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
    )
    batches: dict[datetime, list[ConsentEvent]] = {}
    for event in events:
        batches.setdefault(event.occurred_at, []).append(event)
    state: dict[str, str] = {}
    before_opt_out: dict[str, str] = {}
    for batch in batches.values():
        if any(e.state == ConsentState.REVOKED and state.get(e.category) == ConsentState.GRANTED
               for e in batch):
            before_opt_out = dict(state)
        for event in batch:
            state[event.category] = event.state
    return sorted(c for c, s in before_opt_out.items() if s == ConsentState.GRANTED)
