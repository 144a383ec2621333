"""One patient's history on one line of time, and what they will receive next (the contact page).

Entries carry UTC instants and plain descriptions; callers put them in the clinic's zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.models import (
    PENDING_STATES,
    Appointment,
    Campaign,
    ConsentEvent,
    Contact,
    Enrollment,
    InboundMessage,
    Message,
    MessageEvent,
)

# Enough for years of one patient's messages; the messages screen pages through the rest.
MESSAGE_LIMIT = 500


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # consent | enrollment | appointment | message | reply
    summary: str
    detail: str = ""
    link: str | None = None
    # A second instant worth showing (an appointment's start).
    also_at: datetime | None = None
    events: list[tuple[datetime, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Upcoming:
    message_id: int
    due_at: datetime
    channel: str
    what: str
    state: str


@dataclass(frozen=True)
class Timeline:
    entries: list[Entry]
    upcoming: list[Upcoming]


def _campaign_names(session: Session, contact_id: int) -> dict[int, tuple[str, str, str]]:
    rows = session.execute(
        select(Enrollment.id, Campaign.name, Campaign.slug, Enrollment.state)
        .join(Campaign, Campaign.id == Enrollment.campaign_id)
        .where(Enrollment.contact_id == contact_id)
    )
    return {enrollment_id: (name, slug, state) for enrollment_id, name, slug, state in rows}


def _what(message: Message, campaigns: dict[int, tuple[str, str, str]]) -> str:
    if message.enrollment_id in campaigns:
        return f"{campaigns[message.enrollment_id][0]}, step {message.step_key}"
    if message.appointment_id is not None:
        return f"appointment {message.reminder_key or 'notice'}"
    return f"{message.kind} message"


def timeline(session: Session, contact: Contact) -> Timeline:
    """Newest first; ``upcoming`` is every pending message in due order."""
    entries: list[Entry] = []
    for event in session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == contact.id)):
        verb = "given" if event.state == "granted" else "withdrawn"
        entries.append(
            Entry(
                event.occurred_at,
                "consent",
                f"Consent {verb}: {event.category} by {'text' if event.channel == 'sms' else 'email'}",
                f"{event.source.replace('_', ' ')}, recorded by {event.recorded_by}: {event.evidence}",
            )
        )
    campaigns = _campaign_names(session, contact.id)
    for enrollment in session.scalars(select(Enrollment).where(Enrollment.contact_id == contact.id)):
        name, slug, state = campaigns[enrollment.id]
        entries.append(
            Entry(
                enrollment.created_at,
                "enrollment",
                f"Enrolled in {name}",
                f"now {state}",
                f"/campaigns/{slug}",
            )
        )
    for visit in session.scalars(select(Appointment).where(Appointment.contact_id == contact.id)):
        entries.append(
            Entry(
                visit.created_at,
                "appointment",
                f"Appointment booked: {visit.type}",
                visit.status.replace("_", " "),
                also_at=visit.starts_at,
            )
        )
    messages = list(
        session.scalars(
            select(Message)
            .where(Message.contact_id == contact.id)
            .order_by(Message.due_at.desc(), Message.id.desc())
            .limit(MESSAGE_LIMIT)
        )
    )
    events: dict[int, list[tuple[datetime, str]]] = {}
    if messages:
        for status_event in session.scalars(
            select(MessageEvent)
            .where(MessageEvent.message_id.in_([m.id for m in messages]))
            .order_by(MessageEvent.received_at)
        ):
            events.setdefault(status_event.message_id, []).append(
                (status_event.received_at, status_event.status)
            )
    upcoming: list[Upcoming] = []
    for message in messages:
        what = _what(message, campaigns)
        if message.state in PENDING_STATES:
            upcoming.append(Upcoming(message.id, message.due_at, message.channel, what, message.state))
            continue
        entries.append(
            Entry(
                message.sent_at or message.due_at,
                "message",
                f"{'Text' if message.channel == 'sms' else 'Email'} {message.state}: {what}",
                message.state_reason or "",
                f"/messages/{message.id}",
                events=events.get(message.id, []),
            )
        )
    if contact.phone:
        for reply in session.scalars(
            select(InboundMessage).where(InboundMessage.from_address == contact.phone)
        ):
            entries.append(
                Entry(reply.received_at, "reply", f"Reply: {reply.body}", reply.classification or "")
            )
    entries.sort(key=lambda e: e.at, reverse=True)
    upcoming.sort(key=lambda u: (u.due_at, u.message_id))
    return Timeline(entries=entries, upcoming=upcoming)
