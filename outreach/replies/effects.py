"""What an inbound reply changes at once, inside the webhook's transaction.

"Never to someone who said stop" must hold before the Celery task that writes replies has
even started, so the consent changes and the crisis pause are applied here, synchronously,
with the contacts locked (``outbox.lock_contacts``; the caller holds the lock). Replies, inbox
items and alerts come later, in ``process_inbound``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from outreach import outbox
from outreach.contacts import consent
from outreach.models import (
    Category,
    Channel,
    ConsentSource,
    Contact,
    Enrollment,
    InboundMessage,
    Message,
    MessageKind,
    MessageState,
)

# Exact reasons written on cancelled messages; an opt-in looks for the first to resume them.
SMS_OPT_OUT_REASON = "the patient opted out of SMS by reply"
CRISIS_PAUSE_REASON = "crisis language in an SMS reply"
_PAUSE_CAUSE = re.compile(r"\(inbound #(\d+)\)$")


def sms_opted_out(session: Session, contact_id: int) -> bool:
    """The contact opted out of SMS: their care consent is revoked (a STOP revokes every
    category). Dispatch uses the same test for replies and staff messages."""
    return consent.state_of(session, contact_id, Channel.SMS, Category.CARE) == "revoked"


def _evidence(inbound: InboundMessage, now: datetime) -> consent.Evidence:
    return consent.Evidence(
        source=ConsentSource.KEYWORD,
        wording=f"SMS reply: {inbound.body}",
        recorded_by="patient",
        inbound_message_id=inbound.id,
        occurred_at=now,
    )


def opt_out(
    session: Session, contacts: Sequence[Contact], inbound: InboundMessage, now: datetime
) -> dict[int, list[str]]:
    """Revoke SMS for every category, cancel every pending SMS, stop SMS enrollment steps.

    Returns the categories newly revoked per contact (empty when they were already opted out:
    a second STOP changes nothing and earns no second confirmation).
    """
    revoked: dict[int, list[str]] = {}
    for contact in contacts:
        categories = [
            c for c in Category if consent.state_of(session, contact.id, Channel.SMS, c) != "revoked"
        ]
        if categories:
            consent.revoke(session, contact.id, Channel.SMS, categories, _evidence(inbound, now))
            revoked[contact.id] = [str(c) for c in categories]
        outbox.cancel_pending(
            session, SMS_OPT_OUT_REASON, contact_id=contact.id, channel=Channel.SMS, now=now
        )
        for enrollment in _enrollments(session, contact.id):
            if Channel.SMS not in (enrollment.stopped_channels or []):
                # Reassigned, not appended: JSON columns do not track in-place changes.
                enrollment.stopped_channels = [*(enrollment.stopped_channels or []), str(Channel.SMS)]
                enrollment.updated_at = now
    return revoked


def opt_in(
    session: Session, contacts: Sequence[Contact], inbound: InboundMessage, now: datetime
) -> dict[int, list[str]]:
    """Restore the SMS categories each contact had before their last opt-out, never more.

    Automated SMS that the opt-out cancelled and that are still in the future go back to
    ``scheduled`` (their idempotency keys are unchanged, so nothing can be sent twice); what
    fell due while the patient was opted out stays cancelled. Returns what was restored.
    """
    restored: dict[int, list[str]] = {}
    for contact in contacts:
        before = consent.granted_before_last_revocation(session, contact.id, Channel.SMS)
        missing = [c for c in before if not consent.has_consent(session, contact.id, Channel.SMS, c)]
        if not missing:
            continue
        consent.grant(session, contact.id, Channel.SMS, missing, _evidence(inbound, now))
        restored[contact.id] = missing
        for enrollment in _enrollments(session, contact.id):
            if Channel.SMS in (enrollment.stopped_channels or []):
                enrollment.stopped_channels = [c for c in enrollment.stopped_channels if c != Channel.SMS]
                enrollment.updated_at = now
        _resume_cancelled_sms(session, contact.id, now)
    return restored


def _resume_cancelled_sms(session: Session, contact_id: int, now: datetime) -> int:
    stmt = (
        update(Message)
        .where(
            Message.contact_id == contact_id,
            Message.channel == Channel.SMS,
            Message.kind == MessageKind.AUTOMATED,
            Message.state == MessageState.CANCELLED,
            Message.state_reason == SMS_OPT_OUT_REASON,
            Message.due_at > now,
        )
        .values(state=MessageState.SCHEDULED, state_reason="resumed: the patient opted back in",
                lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    result: CursorResult[Any] = session.execute(stmt)  # type: ignore[assignment]
    return max(result.rowcount, 0)


def pause_for_crisis(
    session: Session, contacts: Sequence[Contact], inbound: InboundMessage, now: datetime
) -> list[int]:
    """Pause all automation to these contacts until staff clear it; returns who was newly paused.

    Pending automated messages are not cancelled: dispatch holds them while the pause lasts
    (outreach.delivery.checks), so clearing the pause lets the patient's reminders resume.
    """
    paused: list[int] = []
    for contact in contacts:
        if contact.automation_paused_at is None:
            contact.automation_paused_at = now
            contact.automation_paused_reason = f"{CRISIS_PAUSE_REASON} (inbound #{inbound.id})"
            contact.updated_at = now
            paused.append(contact.id)
    return paused


def inbound_id_of_pause(reason: str | None) -> int | None:
    """The inbound message a pause reason written by ``pause_for_crisis`` names, if any."""
    found = _PAUSE_CAUSE.search(reason or "")
    return int(found.group(1)) if found else None


def _enrollments(session: Session, contact_id: int) -> list[Enrollment]:
    return list(session.scalars(select(Enrollment).where(Enrollment.contact_id == contact_id)))
