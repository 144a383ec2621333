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
from outreach.delivery.record import ACCEPTED, LOST, finish_attempt, lost_attempts
from outreach.delivery.send import Services
from outreach.models import Message, MessageAttempt, MessageState
from outreach.ops import metrics
from outreach.outbox import transition

# Look this far before the attempt started, for clock skew between us and the provider.
CLOCK_SKEW = timedelta(minutes=5)
BATCH = 100
# A message whose sending worker was lost this many times, the provider never receiving it,
# is not tried again: one loss is a deploy or a crash elsewhere in the batch, but this many
# says something about the message stops its worker (memory, a crash in a library).
LOSSES_LIMIT = 15
LOST_DETAIL = "its worker was lost; the provider never received it"


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
        finish_attempt(session, message_id, now, outcome="unknown")  # its lost worker's, if open
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
        # An attempt still open was its lost worker's: the call was made after all.
        finish_attempt(session, message_id, now, outcome=ACCEPTED, provider_id=found.provider_id)
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
    # Not received. An attempt still open is its lost worker's (a client that gave up closes its
    # own as ``unknown``): the worker may have died before this message's call, so the attempt
    # is not counted against max_attempts, which bounds calls that went out and got no answer
    # (a provider that silently loses everything must not be called forever).
    finish_attempt(session, message_id, now, outcome=LOST, detail=LOST_DETAIL)
    losses = lost_attempts(session, message_id)
    used = message.attempts - losses
    if used >= message.max_attempts or losses >= LOSSES_LIMIT:
        reason = (
            f"never reached the provider after {used} attempts"
            if used >= message.max_attempts
            else f"its sending worker stopped {losses} times before the provider received it; not tried again"
        )
        transition(session, message_id, [MessageState.UNKNOWN], MessageState.FAILED, reason=reason, now=now)
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
