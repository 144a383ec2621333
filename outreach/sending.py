"""Send one claimed message: re-check, render, record the attempt, call the provider, record.

Two short transactions around the provider call, following healthchecks' ledger pattern:

1. *prepare*: lock the contact, re-check everything that may have changed since the message
   was scheduled (``checks.decide``), render, then ``queued -> sending`` with an attempt row,
   committed **before** the provider is called, so a crash mid-call leaves a visible
   ``sending`` row that the rescue sweep turns into ``unknown`` (reconciled, never resent).
2. *call*: lock the contact again, confirm the message is still ours and consent still holds
   (an opt-out may have committed in between), call the provider while holding the lock, and
   record the outcome. An opt-out therefore either happened before the call (and we do not
   send) or waited for the provider's answer.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, lazyload, sessionmaker

from outreach import checks
from outreach import outgoing as outgoing_builder
from outreach.channels import DeliveryError, Outgoing, Provider, SendResult
from outreach.config import Settings
from outreach.effects import apply_effect
from outreach.models import Message, MessageAttempt, MessageState, utcnow
from outreach.outbox import lock_contacts, transition
from outreach.ratelimit import RateLimitUnavailable

log = logging.getLogger(__name__)

BACKOFF_CAP = timedelta(hours=1)
# A message's attempts and events are not needed to send it; loading them costs two queries.
NO_RELATIONS = [lazyload("*")]
# A rate-limit wait longer than this is better spent rescheduling than holding a worker.
MAX_RATE_WAIT_SECONDS = 5.0
RATE_STORE_RETRY_SECONDS = 5.0
# Time kept in hand for locking and re-checking before a rate-limit slot.
LOCK_MARGIN_SECONDS = 0.05


class RateLimiter(Protocol):
    def acquire(self, sender: str, now: datetime, *, max_wait: float = ...) -> float:
        """Seconds to wait before sending (0 = now). At most ``max_wait``: the slot is ours;
        more: nothing was taken, come back later (``outreach.ratelimit``)."""
        ...


class NoLimit:
    """For tests of other behaviour."""

    def acquire(self, sender: str, now: datetime, *, max_wait: float = 0.0) -> float:
        return 0.0


@dataclass
class Services:
    """What sending needs, built once per process at the entry point."""

    settings: Settings
    session_factory: sessionmaker[Session]
    providers: Mapping[str, Provider]
    limiter: RateLimiter
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep


def backoff(attempt: int, base: timedelta, retry_after: float | None = None) -> timedelta:
    """Exponential backoff with jitter (half to full), never shorter than the provider's hint."""
    ceiling = min(BACKOFF_CAP, base * (2 ** max(attempt - 1, 0)))
    delay = timedelta(seconds=random.uniform(ceiling.total_seconds() / 2, ceiling.total_seconds()))
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


def send_message(services: Services, message_id: int) -> str:
    """Process one message id; returns the state it ended in (for logs and tests)."""
    prepared = _prepare(services, message_id)
    if isinstance(prepared, str):
        return prepared
    outgoing, sender, attempt = prepared
    try:
        wait = services.limiter.acquire(sender, services.clock(), max_wait=MAX_RATE_WAIT_SECONDS)
    except RateLimitUnavailable:
        # The provider was not called: hand the message back rather than leave it "sending".
        return _requeue_for_rate(services, message_id, RATE_STORE_RETRY_SECONDS, "rate limiter unavailable")
    if wait > MAX_RATE_WAIT_SECONDS:
        return _requeue_for_rate(services, message_id, wait, "waiting for the sender's rate limit")
    slot = time.monotonic() + wait
    # Sleep most of the wait before taking the locks, the rest after the re-check, so the
    # provider sees the slot's instant (not the slot plus however long the re-check took)
    # and no lock is held for long.
    services.sleep(max(0.0, wait - LOCK_MARGIN_SECONDS))
    return _call(services, message_id, outgoing, attempt, slot)


def _prepare(services: Services, message_id: int) -> str | tuple[Outgoing, str, int]:
    settings = services.settings
    with services.session_factory() as session, session.begin():
        message = session.get(Message, message_id, options=NO_RELATIONS)
        if message is None:
            return "missing"
        if message.state != MessageState.QUEUED:
            return str(message.state)  # a duplicate task: someone else has it
        # Kept referenced so the checks below find the contact (and its consents) in the session.
        _locked = lock_contacts(session, [message.contact_id] if message.contact_id is not None else [])
        now = services.clock()
        decision = checks.decide(session, settings, message, now)
        if isinstance(decision, checks.Hold):
            transition(
                session,
                message_id,
                [MessageState.QUEUED],
                MessageState.SCHEDULED,
                reason=decision.reason,
                due_at=decision.until,
                lease_until=None,
            )
            return MessageState.SCHEDULED
        if isinstance(decision, checks.Stop):
            transition(session, message_id, [MessageState.QUEUED], decision.state, reason=decision.reason)
            return decision.state
        try:
            outgoing = outgoing_builder.build(session, settings, message, decision.to, now)
        except outgoing_builder.RenderFailure as exc:
            transition(session, message_id, [MessageState.QUEUED], MessageState.FAILED, reason=str(exc))
            return MessageState.FAILED
        attempt = message.attempts + 1
        moved = transition(
            session,
            message_id,
            [MessageState.QUEUED],
            MessageState.SENDING,
            reason=None,
            attempts=attempt,
            lease_until=now + timedelta(seconds=settings.send_lease_seconds),
            to_address=outgoing.to,
            subject=outgoing.subject,
            body=outgoing.body,
            correlation_id=outgoing.correlation_id,
        )
        if not moved:
            return "lost-race"
        session.add(MessageAttempt(message_id=message_id, number=attempt, started_at=now))
        return outgoing, decision.sender, attempt


def _requeue_for_rate(services: Services, message_id: int, wait: float, reason: str) -> str:
    """Hand the message back to the schedule instead of blocking a worker for long."""
    with services.session_factory() as session, session.begin():
        now = services.clock()
        transition(
            session,
            message_id,
            [MessageState.SENDING],
            MessageState.SCHEDULED,
            reason=reason,
            due_at=now + timedelta(seconds=wait),
            attempts=Message.attempts - 1,
            lease_until=None,
        )
        _finish_attempt(session, message_id, now, outcome="deferred", detail=reason)
    return MessageState.SCHEDULED


def _still_ours(message: Message | None, attempt: int) -> bool:
    """Still sending, and still *our* attempt: a worker that stalled past its lease may find the
    message rescued, reconciled and re-claimed by another worker, which must be the only one
    to send it."""
    return message is not None and message.state == MessageState.SENDING and message.attempts == attempt


def _call(services: Services, message_id: int, outgoing: Outgoing, attempt: int, slot: float) -> str:
    with services.session_factory() as session, session.begin():
        contact_id = session.scalar(select(Message.contact_id).where(Message.id == message_id))
        _locked = lock_contacts(session, [contact_id] if contact_id is not None else [])
        # The message row too, after the contact (the order every writer takes them in), so
        # what is checked here still holds when the provider answers.
        message = session.get(
            Message, message_id, with_for_update=True, populate_existing=True, options=NO_RELATIONS
        )
        if not _still_ours(message, attempt):
            return "lost-race"
        assert message is not None
        if message.contact_id is not None:
            stopped = checks.still_wanted(session, message)
            reason = stopped.reason if stopped else checks.consent_problem(session, message)
            if reason:
                now = services.clock()
                transition(session, message_id, [MessageState.SENDING], MessageState.CANCELLED, reason=reason)
                _finish_attempt(session, message_id, now, outcome="skipped", detail=reason)
                return MessageState.CANCELLED
        remaining = slot - time.monotonic()
        if remaining > 0:
            services.sleep(remaining)
        provider = services.providers[outgoing.channel]
        try:
            result = provider.send(outgoing)
        except DeliveryError as error:
            return _record_failure(session, services, message, error)
        except Exception as exc:
            # An adapter bug after the request may have left: we cannot know, so reconcile.
            # Only the type is logged: a library's message may quote the number or the text.
            kind = type(exc).__name__
            log.error("provider adapter raised %s unexpectedly (message id %s)", kind, message_id)
            return _record_failure(
                session,
                services,
                message,
                DeliveryError(f"unexpected adapter error ({kind})", permanent=False, ambiguous=True),
            )
        return _record_accept(session, services, message_id, result)


def _record_accept(session: Session, services: Services, message_id: int, result: SendResult) -> str:
    now = services.clock()
    values: dict[str, Any] = {
        "provider_id": result.provider_id,
        "provider_status": result.status,
        "sent_at": now,
        "segments": result.segments,
        "price": result.price,
        "lease_until": None,
    }
    if not transition(session, message_id, [MessageState.SENDING], MessageState.SENT, **values):
        # A status callback overtook us (it found the row by correlation id and moved it
        # forward already); keep its state, fill in what only we know.
        session.execute(
            update(Message)
            .where(Message.id == message_id, Message.provider_id.is_(None))
            .values(provider_id=result.provider_id, sent_at=now, segments=result.segments)
        )
    _finish_attempt(session, message_id, now, outcome="accepted", provider_id=result.provider_id)
    return MessageState.SENT


def _record_failure(session: Session, services: Services, message: Message, error: DeliveryError) -> str:
    now = services.clock()
    message_id = message.id
    if error.ambiguous:
        transition(
            session,
            message_id,
            [MessageState.SENDING],
            MessageState.UNKNOWN,
            reason=error.detail,
            error_code=error.code,
        )
        _finish_attempt(session, message_id, now, outcome="unknown", error=error)
        return MessageState.UNKNOWN
    if error.permanent or message.attempts >= message.max_attempts:
        reason = (
            error.detail if error.permanent else f"gave up after {message.attempts} attempts: {error.detail}"
        )
        transition(
            session,
            message_id,
            [MessageState.SENDING],
            MessageState.FAILED,
            reason=reason,
            error_code=error.code,
            lease_until=None,
        )
        _finish_attempt(
            session, message_id, now, outcome="permanent" if error.permanent else "retry", error=error
        )
        if error.effect is not None:
            apply_effect(session, message, error.effect, error.code, now)
        return MessageState.FAILED
    retry_at = now + backoff(
        message.attempts, timedelta(seconds=services.settings.retry_backoff_seconds), error.retry_after
    )
    if message.not_after is not None and retry_at > message.not_after:
        transition(
            session,
            message_id,
            [MessageState.SENDING],
            MessageState.EXPIRED,
            reason=f"could not send before it stopped being useful: {error.detail}",
            error_code=error.code,
        )
        _finish_attempt(session, message_id, now, outcome="retry", error=error)
        return MessageState.EXPIRED
    transition(
        session,
        message_id,
        [MessageState.SENDING],
        MessageState.SCHEDULED,
        reason=f"retrying: {error.detail}",
        due_at=retry_at,
        error_code=error.code,
        lease_until=None,
    )
    _finish_attempt(session, message_id, now, outcome="retry", error=error)
    return MessageState.SCHEDULED


def _finish_attempt(
    session: Session,
    message_id: int,
    now: datetime,
    *,
    outcome: str,
    error: DeliveryError | None = None,
    detail: str | None = None,
    provider_id: str | None = None,
) -> None:
    """Complete the message's open attempt row (one UPDATE; there is at most one open)."""
    session.execute(
        update(MessageAttempt)
        .where(MessageAttempt.message_id == message_id, MessageAttempt.finished_at.is_(None))
        .values(
            finished_at=now,
            outcome=outcome,
            provider_id=provider_id,
            error_code=error.code if error is not None else None,
            detail=(error.detail if error is not None else detail or None),
        )
        .execution_options(synchronize_session=False)
    )
