"""Settle messages whose send outcome is unknown by asking the provider, never by guessing.

A message is ``unknown`` when a provider call timed out after the request left, or a worker
died mid-call. Twilio keeps a list of what it accepted: if our message is there, it was sent;
if it is not there well after the attempt, it never arrived and may be sent again. SMTP keeps
no such record, so an ambiguous email is closed with a reason instead of risking a duplicate.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.channels import DeliveryError
from outreach.delivery.send import Services
from outreach.models import Message, MessageAttempt, MessageState
from outreach.ops import metrics
from outreach.outbox import transition

# Look this far before the attempt started, for clock skew between us and the provider.
CLOCK_SKEW = timedelta(minutes=5)
BATCH = 100


def reconcile_unknown(services: Services) -> dict[str, int]:
    counts = {"sent": 0, "resend": 0, "closed": 0, "waiting": 0}
    with services.session_factory() as session:
        ids = session.scalars(
            select(Message.id).where(Message.state == MessageState.UNKNOWN).order_by(Message.id).limit(BATCH)
        ).all()
    for message_id in ids:
        with services.session_factory() as session, session.begin():
            result = _reconcile_one(session, services, message_id)
        counts[result] += 1
        metrics.RECONCILIATIONS.labels(result).inc()
    return counts


def _reconcile_one(session: Session, services: Services, message_id: int) -> str:
    now = services.clock()
    message = session.get(Message, message_id)
    if message is None or message.state != MessageState.UNKNOWN:
        return "waiting"
    started = (
        session.scalar(
            select(MessageAttempt.started_at)
            .where(MessageAttempt.message_id == message_id)
            .order_by(MessageAttempt.id.desc())
            .limit(1)
        )
        or message.updated_at
    )
    # A request the client gave up on may still be on its way, and the provider's list may lag
    # its accept: wait from when the message became unknown (the client's timeout, or the rescue
    # sweep finding its worker gone), not from the attempt's start, which in a slow batch can
    # be long before the call.
    if now - message.updated_at < timedelta(seconds=services.settings.reconcile_after_seconds):
        return "waiting"
    provider = services.providers[message.channel]
    if not provider.can_reconcile:
        transition(
            session,
            message_id,
            [MessageState.UNKNOWN],
            MessageState.FAILED,
            reason="outcome unknown (connection lost during the send); not resent to avoid a duplicate",
            now=now,
        )
        return "closed"
    try:
        found = provider.find_accepted(
            message.to_address or "", started - CLOCK_SKEW, message.correlation_id or "", body=message.body
        )
    except DeliveryError:
        return "waiting"  # the provider could not be asked; the next sweep asks again
    if found is not None:
        transition(
            session,
            message_id,
            [MessageState.UNKNOWN],
            MessageState.SENT,
            reason="reconciled: the provider had accepted it",
            provider_id=found.provider_id,
            provider_status=found.status,
            sent_at=started,
            now=now,
        )
        return "sent"
    if message.attempts >= message.max_attempts:
        transition(
            session,
            message_id,
            [MessageState.UNKNOWN],
            MessageState.FAILED,
            reason=f"never reached the provider after {message.attempts} attempts",
            now=now,
        )
        return "closed"
    transition(
        session,
        message_id,
        [MessageState.UNKNOWN],
        MessageState.SCHEDULED,
        reason="reconciled: the provider never received it; sending again",
        due_at=now,
        lease_until=None,
        now=now,
    )
    return "resend"
