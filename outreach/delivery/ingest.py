"""Status callbacks in two steps: store at once, apply in batches.

The webhook's cost must not depend on the message: a sender holds the message's row lock
while it waits on Twilio, and one callback waiting for that lock per request would let a burst
of callbacks (two or three per SMS sent) queue behind the senders. So the web process only
appends a ``StatusInbox`` row (no lock on the message) and answers; ``apply_pending`` then
applies stored callbacks in id order, a batch per transaction, through
``outreach.delivery.status.apply`` (forward only, every event kept as a ``MessageEvent``).

Each inbox row is deleted in the transaction that applies it, so a crash between storing and
applying leaves the row for the next run and nothing is applied twice. On PostgreSQL both the
inbox rows and the messages are taken with SKIP LOCKED: two appliers share the work instead of
waiting on each other, and a callback for a message a sender has locked stays in the inbox
until the sender lets go. SQLite has one writer at a time, so neither question arises there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session, lazyload, sessionmaker

from outreach.channels.twilio.callbacks import StatusEvent
from outreach.db import transaction
from outreach.delivery import status
from outreach.models import Message, StatusInbox

# Callbacks applied per transaction: large enough that the per-transaction cost is spread
# thin, small enough that a message row is never locked for long.
BATCH = 500


def store(session: Session, received: Sequence[tuple[StatusEvent, datetime]]) -> None:
    """Append callbacks (each with the instant it arrived) to the inbox in one statement:
    the whole of the webhook's database work."""
    session.execute(
        insert(StatusInbox),
        [
            {
                "provider_id": event.provider_id,
                "correlation_id": event.correlation_id,
                "status": event.status,
                "error_code": event.error_code,
                "payload": event.payload,
                "received_at": at,
            }
            for event, at in received
        ],
    )


@dataclass(frozen=True)
class Batch:
    """One transaction's work: how many callbacks were applied, dropped as unknown, or left
    because their message was locked; and the highest inbox id looked at."""

    applied: int
    unknown: int
    left: int
    last_id: int


def apply_batch(session: Session, now: datetime, after_id: int = 0, limit: int = BATCH) -> Batch:
    """Apply up to ``limit`` stored callbacks with ids above ``after_id``, in id order."""
    rows = session.scalars(
        select(StatusInbox)
        .where(StatusInbox.id > after_id)
        .order_by(StatusInbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return Batch(0, 0, 0, after_id)
    events = [(row, _event(row)) for row in rows]
    found = _messages(session, [event for _, event in events], lock=True)
    by_sid = {m.provider_id: m for m in found if m.provider_id}
    by_correlation = {m.correlation_id: m for m in found if m.correlation_id}
    missing = [event for _, event in events if _pick(event, by_sid, by_correlation) is None]
    # Not taken under SKIP LOCKED, yet there without the lock: a sender holds the row.
    locked = _messages(session, missing, lock=False) if missing else []
    locked_sids = {m.provider_id for m in locked if m.provider_id}
    locked_correlations = {m.correlation_id for m in locked if m.correlation_id}
    done: list[int] = []
    applied = unknown = 0
    for row, event in events:
        message = _pick(event, by_sid, by_correlation)
        if message is not None:
            status.apply(session, message, event, now, received_at=row.received_at)
            applied += 1
        elif event.provider_id in locked_sids or event.correlation_id in locked_correlations:
            continue
        else:
            # Not ours (or long gone): acknowledged to Twilio already, nothing to move.
            unknown += 1
        done.append(row.id)
    session.flush()
    session.execute(delete(StatusInbox).where(StatusInbox.id.in_(done)))
    return Batch(applied, unknown, len(rows) - len(done), rows[-1].id)


def apply_pending(
    factory: sessionmaker[Session],
    clock: Callable[[], datetime],
    run_for: float = 0.9,
    monotonic: Callable[[], float] = time.monotonic,
    limit: int = BATCH,
) -> int:
    """Apply stored callbacks batch by batch until none are left or ``run_for`` seconds pass.

    Callbacks left because their message was locked are passed over for this run (so they
    cannot hold up the rest) and retried by the next one. Returns how many were applied.
    """
    deadline = monotonic() + run_for
    after_id = 0
    applied = 0
    while True:
        with transaction(factory) as session:
            batch = apply_batch(session, clock(), after_id, limit)
        applied += batch.applied
        after_id = batch.last_id
        if batch.applied + batch.unknown + batch.left < limit or monotonic() >= deadline:
            return applied


def waiting(session: Session) -> int:
    """Stored callbacks not yet applied."""
    return session.scalar(select(func.count()).select_from(StatusInbox)) or 0


def _event(row: StatusInbox) -> StatusEvent:
    return StatusEvent(row.provider_id, row.status, row.error_code, row.correlation_id, dict(row.payload))


def _pick(
    event: StatusEvent, by_sid: dict[str, Message], by_correlation: dict[str, Message]
) -> Message | None:
    if event.correlation_id and event.correlation_id in by_correlation:
        return by_correlation[event.correlation_id]
    return by_sid.get(event.provider_id)


def _messages(session: Session, events: Sequence[StatusEvent], *, lock: bool) -> Sequence[Message]:
    sids = {event.provider_id for event in events}
    correlations = {event.correlation_id for event in events if event.correlation_id}
    match = [Message.provider_id.in_(sids)]
    if correlations:
        match.append(Message.correlation_id.in_(correlations))
    query = select(Message).where(or_(*match)).options(lazyload("*"))
    if lock:
        query = query.with_for_update(skip_locked=True, of=Message)
    return session.scalars(query).all()
