"""Recording what a provider call came to: accepted (the common case, written for a whole group
at once), or a failure classified by the adapter (retry with backoff, give up, expire, or
``unknown`` when the request may have arrived)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, bindparam, func, select, text, update
from sqlalchemy.orm import Session

from outreach.channels import DeliveryError, SendResult
from outreach.db import is_postgres
from outreach.delivery.effects import apply_effect
from outreach.models import Message, MessageAttempt, MessageState
from outreach.ops import metrics
from outreach.outbox import transition

BACKOFF_CAP = timedelta(hours=1)


@dataclass(frozen=True)
class Accepted:
    message_id: int
    result: SendResult
    at: datetime


# An attempt's outcome once the provider took the message.
ACCEPTED = "accepted"
# An attempt whose worker was lost (killed, or stalled past its lease) and which the provider
# never received: the batch may have ended before this message's call, so it is not counted
# against the message's ``max_attempts`` (see ``attempts_used``).
LOST = "lost"

_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = MessageAttempt.__table__  # type: ignore[assignment]
# Bound names differ from the column names: SQLAlchemy reserves those for the SET clause.
_TO_SENT = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("b_id"), _MESSAGES.c.state == str(MessageState.SENDING))
    .values(
        state=str(MessageState.SENT),
        updated_at=bindparam("b_at"),
        provider_id=bindparam("b_provider_id"),
        provider_status=bindparam("b_status"),
        sent_at=bindparam("b_at"),
        segments=bindparam("b_segments"),
        price=bindparam("b_price"),
        lease_until=None,
    )
)
_ATTEMPT_ACCEPTED = (
    update(_ATTEMPTS)
    .where(and_(_ATTEMPTS.c.message_id == bindparam("b_id"), _ATTEMPTS.c.finished_at.is_(None)))
    .values(finished_at=bindparam("b_at"), outcome=ACCEPTED, provider_id=bindparam("b_provider_id"))
)


def backoff(attempt: int, base: timedelta, retry_after: float | None = None) -> timedelta:
    """Exponential backoff with jitter (half to full), never shorter than the provider's hint."""
    ceiling = min(BACKOFF_CAP, base * (2 ** max(attempt - 1, 0)))
    delay = timedelta(seconds=random.uniform(ceiling.total_seconds() / 2, ceiling.total_seconds()))
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


# PostgreSQL: the same two updates, each one statement joined to the group's values (one plan
# and one round trip for the group instead of one execution per message).
_TO_SENT_PG = text(
    """UPDATE messages AS m
       SET state = :sent, updated_at = v.at, provider_id = v.provider_id, provider_status = v.status,
           sent_at = v.at, segments = v.segments, price = v.price, lease_until = NULL
       FROM unnest(CAST(:ids AS integer[]), CAST(:ats AS timestamptz[]), CAST(:provider_ids AS text[]),
                   CAST(:statuses AS text[]), CAST(:segments AS integer[]), CAST(:prices AS text[]))
            AS v(id, at, provider_id, status, segments, price)
       WHERE m.id = v.id AND m.state = :sending"""
).bindparams(sent=str(MessageState.SENT), sending=str(MessageState.SENDING))
_ATTEMPT_ACCEPTED_PG = text(
    """UPDATE message_attempts AS a
       SET finished_at = v.at, outcome = :accepted, provider_id = v.provider_id
       FROM unnest(CAST(:ids AS integer[]), CAST(:ats AS timestamptz[]), CAST(:provider_ids AS text[]))
            AS v(id, at, provider_id)
       WHERE a.message_id = v.id AND a.finished_at IS NULL"""
).bindparams(accepted=ACCEPTED)


def record_accepts(session: Session, accepted: Sequence[Accepted]) -> None:
    """``sending -> sent`` for every accepted message of a group, with its attempt row: two
    statements whatever the group's size.

    The caller holds the message rows' locks from before the provider calls, so a status
    callback for one of them waits for this commit and then moves it forward from ``sent``:
    every update matches.
    """
    if not accepted:
        return
    if is_postgres(session):
        ids = [a.message_id for a in accepted]
        ats = [a.at for a in accepted]
        provider_ids = [a.result.provider_id for a in accepted]
        session.execute(
            _TO_SENT_PG,
            {
                "ids": ids,
                "ats": ats,
                "provider_ids": provider_ids,
                "statuses": [a.result.status for a in accepted],
                "segments": [a.result.segments for a in accepted],
                "prices": [a.result.price for a in accepted],
            },
        )
        session.execute(_ATTEMPT_ACCEPTED_PG, {"ids": ids, "ats": ats, "provider_ids": provider_ids})
        return
    rows = [
        {
            "b_id": a.message_id,
            "b_at": a.at,
            "b_provider_id": a.result.provider_id,
            "b_status": a.result.status,
            "b_segments": a.result.segments,
            "b_price": a.result.price,
        }
        for a in accepted
    ]
    session.execute(_TO_SENT, rows)
    session.execute(
        _ATTEMPT_ACCEPTED,
        [{"b_id": a.message_id, "b_at": a.at, "b_provider_id": a.result.provider_id} for a in accepted],
    )


def record_failure(
    session: Session, message: Message, error: DeliveryError, now: datetime, retry_base: timedelta
) -> str:
    message_id = message.id
    if error.ambiguous:
        transition(
            session,
            message_id,
            [MessageState.SENDING],
            MessageState.UNKNOWN,
            reason=error.detail,
            error_code=error.code,
            now=now,
        )
        finish_attempt(session, message_id, now, outcome="unknown", error=error)
        return MessageState.UNKNOWN
    used = attempts_used(session, message)
    if error.permanent or used >= message.max_attempts:
        reason = error.detail if error.permanent else f"gave up after {used} attempts: {error.detail}"
        transition(
            session,
            message_id,
            [MessageState.SENDING],
            MessageState.FAILED,
            reason=reason,
            error_code=error.code,
            lease_until=None,
            now=now,
        )
        finish_attempt(
            session, message_id, now, outcome="permanent" if error.permanent else "retry", error=error
        )
        if error.effect is not None:
            apply_effect(session, message, error.effect, error.code, now)
        return MessageState.FAILED
    # The calls made so far, not the attempts: a message whose workers were lost before its
    # calls waits no longer after a 429 than one that was called each time.
    retry_at = now + backoff(used, retry_base, error.retry_after)
    if message.not_after is not None and retry_at > message.not_after:
        transition(
            session,
            message_id,
            [MessageState.SENDING],
            MessageState.EXPIRED,
            reason=f"could not send before it stopped being useful: {error.detail}",
            error_code=error.code,
            now=now,
        )
        finish_attempt(session, message_id, now, outcome="retry", error=error)
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
        now=now,
    )
    finish_attempt(session, message_id, now, outcome="retry", error=error)
    metrics.RETRIES.inc()
    return MessageState.SCHEDULED


def attempts_used(session: Session, message: Message) -> int:
    """The attempts that count toward ``max_attempts`` and the backoff: every call that may have
    reached the provider. ``message.attempts`` also counts attempts whose worker was lost before
    the provider received anything (``lost``); it stays the fencing number of the current attempt
    (see ``send._still_ours``), so they are subtracted here instead of taken back there."""
    if message.attempts <= 1:
        return message.attempts  # the first attempt has none lost before it: no need to count
    return message.attempts - lost_attempts(session, message.id)


def lost_attempts(session: Session, message_id: int) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(MessageAttempt)
        .where(MessageAttempt.message_id == message_id, MessageAttempt.outcome == LOST)
    )
    return count or 0


def finish_attempt(
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
