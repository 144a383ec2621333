"""Provider status callbacks: stored at once, applied in batches, forward only, every one kept.

The webhook only appends each callback to ``pending_status_events`` (``store``) and answers:
no message row is touched, so a callback never waits for a sender holding its message's lock,
and its cost is one row in a transaction shared with the other callbacks arriving at the same
moment (``outreach.web.group_commit``). The worker applies them (``apply_pending``, ticked by
beat) a batch at a time, in one transaction per batch: each event becomes a ``MessageEvent``,
its message moves forward, and the pending row is deleted. A crash before that commit leaves
every row of the batch pending, so it is applied later, once.

Callbacks arrive late, twice and out of order. A message's state changes only when the new
status ranks above the current one, and its ``provider_status`` only when Twilio's status
ranks above the one recorded, so a late "undelivered" never sits beside state "delivered".
Messages locked by a sender are skipped (``SKIP LOCKED``) and their events wait for the next
batch. An event whose message is not found yet is looked at again a few seconds later, then
dropped after ``UNMATCHED_GRACE`` (a callback for a message we never sent). Parsing and
checking the form is the channel's business (``outreach.channels.twilio.callbacks``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Table, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session, lazyload, sessionmaker

from outreach.channels.twilio.callbacks import StatusEvent
from outreach.channels.twilio.errors import FailureAction, classify_delivery_failure
from outreach.delivery.effects import apply_effect
from outreach.models import Message, MessageEvent, MessageState, PendingStatusEvent
from outreach.outbox import insert_messages

# Our states ranked by how far a message has got. Terminal states share the top rank, so
# "delivered" after "undelivered" (or the reverse) changes nothing.
RANK: dict[str, int] = {
    MessageState.SCHEDULED: 0,
    MessageState.QUEUED: 1,
    MessageState.SENDING: 2,
    MessageState.UNKNOWN: 2,
    MessageState.SENT: 3,
    MessageState.DELIVERED: 4,
    MessageState.UNDELIVERED: 4,
    MessageState.FAILED: 4,
    MessageState.CANCELLED: 4,
    MessageState.SKIPPED: 4,
    MessageState.EXPIRED: 4,
}

# Twilio's statuses as our states. queued/accepted/sending at Twilio all mean "accepted".
PROVIDER_STATUS: dict[str, MessageState] = {
    "accepted": MessageState.SENT,
    "scheduled": MessageState.SENT,
    "queued": MessageState.SENT,
    "sending": MessageState.SENT,
    "sent": MessageState.SENT,
    "delivered": MessageState.DELIVERED,
    "read": MessageState.DELIVERED,
    "undelivered": MessageState.UNDELIVERED,
    "failed": MessageState.FAILED,
    "canceled": MessageState.FAILED,
}

# Twilio's statuses ranked the same way, for ``provider_status``: "read" comes after "delivered".
PROVIDER_RANK: dict[str, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "partially_delivered": 4,
    "read": 5,
}

# A message that failed at the carrier with a transient code gets one later re-send.
RESEND_DELAY = timedelta(hours=2)


# How long an event whose message is not found is kept, and how often it is looked at again.
# Ours carry the message's correlation id (committed before the provider call), so only a
# message deleted since, or one we never sent, stays unmatched.
UNMATCHED_GRACE = timedelta(minutes=2)
UNMATCHED_RETRY = timedelta(seconds=5)
BATCH_SIZE = 500

_PENDING: Table = PendingStatusEvent.__table__  # type: ignore[assignment]
_EVENTS: Table = MessageEvent.__table__  # type: ignore[assignment]
_MESSAGES: Table = Message.__table__  # type: ignore[assignment]


@dataclass
class Applied:
    """What one batch did: events applied, left for a locked message, set aside until their
    message is found, dropped as unknown."""

    applied: int = 0
    waiting: int = 0
    set_aside: int = 0
    dropped: int = 0

    @property
    def seen(self) -> int:
        return self.applied + self.waiting + self.set_aside + self.dropped

    def add(self, other: Applied) -> None:
        self.applied += other.applied
        self.waiting += other.waiting
        self.set_aside += other.set_aside
        self.dropped += other.dropped


def store(session: Session, received: Sequence[tuple[StatusEvent, datetime]]) -> None:
    """Append callbacks (each with the instant it came in) for the applier: one insert."""
    session.execute(
        insert(_PENDING),
        [
            {
                "provider_id": event.provider_id,
                "correlation_id": event.correlation_id,
                "status": event.status,
                "error_code": event.error_code,
                "payload": event.payload,
                "received_at": at,
                "not_before": at,
            }
            for event, at in received
        ],
    )


def apply_pending(session: Session, now: datetime, limit: int = BATCH_SIZE) -> Applied:
    """Apply up to ``limit`` stored callbacks, oldest first, in the caller's transaction."""
    pending = session.execute(
        select(_PENDING)
        .where(_PENDING.c.not_before <= now)
        .order_by(_PENDING.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not pending:
        return Applied()
    owner = _owners(session, pending)
    # Only the messages no sender holds: a locked one's events wait for the next batch
    # instead of holding this one up.
    locked = (
        session.scalars(
            select(Message)
            .where(Message.id.in_(set(owner.values())))
            .with_for_update(skip_locked=True)
            .options(lazyload("*"))
        ).all()
        if owner
        else []
    )
    messages = {message.id: message for message in locked}
    result = Applied()
    done: list[int] = []
    unmatched: list[Row[Any]] = []
    progress: dict[int, _Progress] = {}
    for event in pending:
        message_id = owner.get(event.id)
        if message_id is None:
            unmatched.append(event)
        elif message_id not in messages:
            result.waiting += 1
        else:
            message = messages[message_id]
            progress.setdefault(message_id, _Progress.of(message)).advance(event, now)
            done.append(event.id)
    _write(session, progress, now)
    for message_id, step in progress.items():
        if step.failed_by is not None:
            _after_delivery_failure(session, messages[message_id], step.failed_by, now)
    result.applied = len(done)
    result.set_aside, result.dropped = _set_aside(session, unmatched, now)
    if done:
        session.execute(delete(_PENDING).where(_PENDING.c.id.in_(done)))
    return result


def apply_for(factory: sessionmaker[Session], clock: Callable[[], datetime], run_for: float) -> Applied:
    """Batches until nothing is due or ``run_for`` seconds have passed (the beat tick)."""
    total = Applied()
    deadline = time.monotonic() + run_for
    while True:
        with factory() as session, session.begin():
            batch = apply_pending(session, clock())
        total.add(batch)
        # A full batch of callbacks for messages senders hold would be taken again at once,
        # the same rows; the next tick comes soon enough.
        stuck = batch.waiting == batch.seen
        if batch.seen < BATCH_SIZE or stuck or time.monotonic() >= deadline:
            return total


def _owners(session: Session, pending: Sequence[Row[Any]]) -> dict[int, int]:
    """Each pending event's message id, where its message is known (by correlation id first:
    ours is in every callback URL, and holds even when the create response was lost)."""
    correlations = {e.correlation_id for e in pending if e.correlation_id}
    sids = {e.provider_id for e in pending}
    found = session.execute(
        select(Message.id, Message.provider_id, Message.correlation_id).where(
            or_(Message.provider_id.in_(sids), Message.correlation_id.in_(correlations))
        )
    ).all()
    by_correlation = {row.correlation_id: row.id for row in found if row.correlation_id}
    by_sid = {row.provider_id: row.id for row in found if row.provider_id}
    owner: dict[int, int] = {}
    for event in pending:
        message_id = by_correlation.get(event.correlation_id) or by_sid.get(event.provider_id)
        if message_id is not None:
            owner[event.id] = message_id
    return owner


def _set_aside(session: Session, unmatched: Sequence[Row[Any]], now: datetime) -> tuple[int, int]:
    """Look again later at events whose message is not found; drop those past the grace.
    Returns how many were set aside and how many dropped."""
    expired = [e.id for e in unmatched if now - e.received_at >= UNMATCHED_GRACE]
    later = [e.id for e in unmatched if now - e.received_at < UNMATCHED_GRACE]
    if expired:
        session.execute(delete(_PENDING).where(_PENDING.c.id.in_(expired)))
    if later:
        session.execute(
            update(_PENDING).where(_PENDING.c.id.in_(later)).values(not_before=now + UNMATCHED_RETRY)
        )
    return len(later), len(expired)


@dataclass
class _Progress:
    """One message's row as the batch's events move it, folded in arrival order."""

    values: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    failed_by: StatusEvent | None = None

    @classmethod
    def of(cls, message: Message) -> _Progress:
        return cls(
            {
                "state": message.state,
                "provider_status": message.provider_status,
                "provider_id": message.provider_id,
                "lease_until": message.lease_until,
                "error_code": message.error_code,
                "state_reason": message.state_reason,
            }
        )

    def advance(self, event: Row[Any], now: datetime) -> None:
        self.events.append(
            {
                "status": event.status,
                "error_code": event.error_code,
                "payload": event.payload,
                "received_at": event.received_at,
            }
        )
        values = self.values
        if values["provider_id"] is None:
            values["provider_id"] = event.provider_id
        if _provider_status_advances(values["provider_status"], event.status):
            values["provider_status"] = event.status
        target = PROVIDER_STATUS.get(event.status)
        if target is None or RANK[target] <= RANK.get(values["state"], 0):
            return
        values["state"] = target
        values["provider_status"] = event.status
        values["lease_until"] = None
        if event.error_code:
            values["error_code"] = event.error_code
        if target in (MessageState.UNDELIVERED, MessageState.FAILED):
            values["state_reason"] = f"carrier reported {event.status}" + (
                f" (error {event.error_code})" if event.error_code else ""
            )
            self.failed_by = StatusEvent(
                event.provider_id, event.status, event.error_code, event.correlation_id, event.payload
            )


def _write(session: Session, progress: Mapping[int, _Progress], now: datetime) -> None:
    """Every event of the batch, then every message it moved: two executemany statements.

    The rows are locked (FOR UPDATE above; SQLite's write lock), so what was read still holds.
    """
    if not progress:
        return
    session.execute(
        insert(_EVENTS),
        [{"message_id": mid, **event} for mid, step in progress.items() for event in step.events],
    )
    session.execute(
        _MOVE,
        [{"b_id": mid, "b_updated_at": now, **_bound(step.values)} for mid, step in progress.items()],
    )


def _bound(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"b_{key}": value for key, value in values.items()}


_MOVE = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        provider_status=bindparam("b_provider_status"),
        provider_id=bindparam("b_provider_id"),
        lease_until=bindparam("b_lease_until"),
        error_code=bindparam("b_error_code"),
        state_reason=bindparam("b_state_reason"),
        updated_at=bindparam("b_updated_at"),
    )
)


def _provider_status_advances(current: str | None, new: str) -> bool:
    if new not in PROVIDER_RANK:
        return False
    return current is None or PROVIDER_RANK[new] > PROVIDER_RANK.get(current, -1)


def _after_delivery_failure(session: Session, message: Message, event: StatusEvent, now: datetime) -> None:
    failure = classify_delivery_failure(event.error_code, event.status)
    if failure.effect is not None:
        apply_effect(session, message, failure.effect, event.error_code, now)
    elif failure.action == FailureAction.RETRY_ONCE_LATER and ":resend" not in message.idempotency_key:
        # At most one delayed re-send, as a new outbox row: it passes every send-time check again.
        delay = timedelta(seconds=failure.retry_after) if failure.retry_after else RESEND_DELAY
        insert_messages(
            session,
            [
                {
                    "idempotency_key": f"{message.idempotency_key}:resend",
                    "contact_id": message.contact_id,
                    "channel": message.channel,
                    "category": message.category,
                    "kind": message.kind,
                    "template": message.template,
                    "context": message.context,
                    "body_override": message.body_override,
                    "to_override": message.to_override,
                    "enrollment_id": message.enrollment_id,
                    "step_key": message.step_key,
                    "appointment_id": message.appointment_id,
                    "appointment_version": message.appointment_version,
                    "reminder_key": message.reminder_key,
                    "due_at": now + delay,
                    "not_after": message.not_after,
                }
            ],
            now=now,
        )
