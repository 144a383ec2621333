"""Small builders for rows the delivery tests need (no patient data beyond fake values)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from sqlalchemy.orm import Session

from outreach.contacts import consent
from outreach.models import Category, Channel, ConsentSource, Contact, Message, utcnow
from outreach.outbox import insert_messages

# The instant tests stamp on rows they move between states by hand (``outbox.transition``),
# where the moment itself is not what the test is about.
STAMPED_AT = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)

_numbers = count(1000)


def make_contact(
    session: Session,
    *,
    phone: str | None = None,
    email: str | None = None,
    timezone: str = "America/Los_Angeles",
    sms: tuple[str, ...] = ("care", "education"),
    email_consent: tuple[str, ...] = ("care", "education"),
) -> Contact:
    n = next(_numbers)
    contact = Contact(
        first_name=f"Pat{n}",
        last_name="Example",
        phone=phone or f"+1415555{n:04d}",
        email=email or f"pat{n}@example.org",
        timezone=timezone,
    )
    session.add(contact)
    session.flush()
    evidence = consent.Evidence(
        source=ConsentSource.STAFF, wording="test fixture", recorded_by="tests", occurred_at=utcnow()
    )
    if sms:
        consent.grant(session, contact.id, Channel.SMS, sms, evidence)
    if email_consent:
        consent.grant(session, contact.id, Channel.EMAIL, email_consent, evidence)
    return contact


def make_message(
    session: Session,
    contact: Contact | None,
    *,
    key: str | None = None,
    due_at: datetime | None = None,
    channel: str = Channel.SMS,
    category: str = Category.CARE,
    kind: str = "system",
    body: str = "Test message from the clinic.",
    **extra: Any,
) -> Message:
    row = {
        "idempotency_key": key or f"test:{next(_numbers)}",
        "contact_id": contact.id if contact else None,
        "channel": channel,
        "category": category,
        "kind": kind,
        "body_override": body,
        "due_at": due_at or utcnow() - timedelta(seconds=1),
        **extra,
    }
    insert_messages(session, [row], now=row["due_at"])
    session.flush()
    message = session.query(Message).filter_by(idempotency_key=row["idempotency_key"]).one()
    return message
