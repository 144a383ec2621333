"""Helpers for the replies, inbox and unsubscribe tests: contacts with consent, webhook forms."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach import outbox
from outreach.config import Settings
from outreach.contacts import consent
from outreach.db import transaction
from outreach.models import Channel, ConsentSource, Contact, Message
from outreach.replies.inbound import StoreResult, process_inbound, store_inbound
from tests.support.factories import STAMPED_AT

CLINIC_NUMBER = "+15005550006"
GRANTED_AT = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)
_sids = itertools.count(1)


def add_contact(
    session: Session,
    phone: str | None = "+15105550101",
    first_name: str = "Ana",
    *,
    sms: Iterable[str] = ("care", "education"),
    email: Iterable[str] = (),
    email_address: str | None = "ana@example.org",
) -> Contact:
    contact = Contact(
        first_name=first_name, last_name="Test", phone=phone, email=email_address,
        timezone="America/Los_Angeles",
    )
    session.add(contact)
    session.flush()
    # Dated before every test's "now", so the ledger's order is the story's order.
    evidence = consent.Evidence(source=ConsentSource.STAFF, wording="test consent", occurred_at=GRANTED_AT)
    if list(sms):
        consent.grant(session, contact.id, Channel.SMS, list(sms), evidence)
    if list(email):
        consent.grant(session, contact.id, Channel.EMAIL, list(email), evidence)
    session.commit()
    return contact


def form(body: str, from_: str = "+15105550101", sid: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid or f"SM{next(_sids):032d}",
        "AccountSid": "AC" + "0" * 32,
        "From": from_,
        "To": CLINIC_NUMBER,
        "Body": body,
        "NumMedia": "0",
        **extra,
    }


def store(factory: sessionmaker[Session], settings: Settings, fields: dict[str, str],
          now: datetime) -> StoreResult:
    with transaction(factory) as session:
        return store_inbound(session, settings, fields, now)


def receive(factory: sessionmaker[Session], settings: Settings, fields: dict[str, str],
            now: datetime) -> list[str]:
    """Webhook then task, as in production (each in its own transaction)."""
    result = store(factory, settings, fields, now)
    with transaction(factory) as session:
        return process_inbound(session, settings, result.inbound_id, now)


def schedule(session: Session, contact_id: int, channel: str, category: str, key: str,
             due_at: datetime) -> None:
    outbox.insert_messages(
        session,
        [{"idempotency_key": key, "contact_id": contact_id, "channel": channel, "category": category,
          "template": "sms/test", "due_at": due_at}], now=STAMPED_AT,
    )
    session.commit()


def message(session: Session, key: str) -> Message:
    return session.scalars(select(Message).where(Message.idempotency_key == key)).one()
