"""What a provider's failure means beyond one message: an opted-out or dead address.

Twilio 21610 means the number replied STOP at Twilio (perhaps before we heard of it): we
record the revocation in the ledger and cancel what is pending. Invalid or unreachable
addresses are suppressed on that channel for every contact who shares them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.channels import Effect
from outreach.contacts import consent
from outreach.models import Category, Channel, ConsentSource, Contact, Message, Suppression
from outreach.outbox import cancel_pending


def apply_effect(session: Session, message: Message, effect: Effect, code: str | None, now: datetime) -> None:
    address = message.to_address
    if effect == Effect.REVOKE_SMS_CONSENT and message.contact_id is not None:
        consent.revoke(
            session,
            message.contact_id,
            Channel.SMS,
            list(Category),
            consent.Evidence(
                source=ConsentSource.PROVIDER,
                wording=f"provider error {code}: the number has opted out at the carrier or Twilio",
                occurred_at=now,
            ),
        )
        cancel_pending(
            session, "the contact opted out of SMS", contact_id=message.contact_id, channel=Channel.SMS,
            now=now,
        )
    elif effect == Effect.SUPPRESS_ADDRESS and address:
        suppress(session, message.channel, address, f"provider error {code}", code, now)


def suppress(
    session: Session, channel: str, address: str, reason: str, code: str | None, now: datetime
) -> None:
    """Stop using an address on a channel, and cancel what is pending to it."""
    exists = session.scalar(
        select(Suppression.id).where(Suppression.channel == channel, Suppression.address == address)
    )
    if exists is None:
        session.add(
            Suppression(channel=channel, address=address, reason=reason, error_code=code, created_at=now)
        )
        session.flush()
    column = Contact.phone if channel == Channel.SMS else Contact.email
    for contact_id in session.scalars(select(Contact.id).where(column == address)):
        cancel_pending(
            session, f"address suppressed: {reason}", contact_id=contact_id, channel=channel, now=now
        )
