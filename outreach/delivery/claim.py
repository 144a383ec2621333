"""Claiming due messages and rescuing stranded ones.

The claim is one statement that moves due ``scheduled`` rows to ``queued`` and returns their
ids. On PostgreSQL it locks with ``FOR UPDATE SKIP LOCKED`` inside a CTE (so the planner cannot
update more rows than the LIMIT); on SQLite, where SQLAlchemy silently drops FOR UPDATE, the
transaction already holds the single write lock (BEGIN IMMEDIATE), so a plain
``UPDATE ... WHERE id IN (subquery) RETURNING id`` is exclusive. Either way two dispatchers
never claim the same row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, Update, literal_column, select, update
from sqlalchemy.orm import Session

from outreach.db import is_postgres
from outreach.models import Message, MessageKind, MessageState
from outreach.ops import metrics

DEFAULT_CLAIM_LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class Claim:
    """One claim's ids by lane: ``replies`` (what is not automated: staff's answers, HELP, an
    opt-out's confirmation, the acknowledgement of a patient's text) and ``automated``."""

    replies: list[int]
    automated: list[int]

    @property
    def ids(self) -> list[int]:
        return self.replies + self.automated


def claim_due(
    session: Session, now: datetime, batch_size: int = 500, lease: timedelta = DEFAULT_CLAIM_LEASE
) -> list[int]:
    """Move up to ``batch_size`` due messages to ``queued`` and return their ids: first what is
    not automated, then the rest, each part by id (``claim_lanes``, as one list)."""
    return claim_lanes(session, now, batch_size, lease).ids


def claim_lanes(
    session: Session,
    now: datetime,
    batch_size: int = 500,
    lease: timedelta = DEFAULT_CLAIM_LEASE,
    *,
    automated: bool = True,
) -> Claim:
    """Move up to ``batch_size`` due messages to ``queued``: first what is not automated, then
    (if ``automated``) automated messages in the room left.

    A campaign's or a reminder wave's backlog, due earlier and sent at a sender's rate limit
    (one a second from a long code), would otherwise hold a nurse's answer or the "a team member
    will get back to you" for as long as the backlog lasts. Those rows are few and have a
    partial index of their own (``ix_messages_due_replies``), which a bulk enrollment's
    automated rows never enter; the dispatcher gives them send tasks of their own, on a lane
    of their own (``outreach.delivery.dispatch``)."""
    first = _claim(session, _due(now, batch_size, replies=True), now, lease)
    rest: list[int] = []
    if automated and len(first) < batch_size:
        rest = _claim(session, _due(now, batch_size - len(first)), now, lease)
    return Claim(replies=first, automated=rest)


def _claim(session: Session, due: Select[int], now: datetime, lease: timedelta) -> list[int]:
    return _queue(session, update(Message).where(_unlocked(session, due)), now, lease)


def _due(now: datetime, limit: int, *, replies: bool = False) -> Select[int]:
    """The first ``limit`` due rows in due order; with ``replies``, only those not automated."""
    due = select(Message.id).where(Message.state == MessageState.SCHEDULED, Message.due_at <= now)
    if replies:
        # Written out, not bound: the partial index's condition must be provable from the
        # statement itself, whatever plan PostgreSQL keeps for it.
        due = due.where(Message.kind != literal_column(f"'{MessageKind.AUTOMATED}'"))
    return due.order_by(Message.due_at, Message.id).limit(limit)


def claim_keys(session: Session, keys: Sequence[str], now: datetime, lease: timedelta) -> list[int]:
    """Claim the due, scheduled messages among these idempotency keys, whatever else is due:
    the lane for a crisis reply and its alerts, which must not wait behind a campaign's backlog."""
    if not keys:
        return []
    stmt = update(Message).where(
        Message.idempotency_key.in_(list(keys)),
        Message.state == MessageState.SCHEDULED,
        Message.due_at <= now,
    )
    return _queue(session, stmt, now, lease)


def _queue(session: Session, stmt: Update, now: datetime, lease: timedelta) -> list[int]:
    """Run a claim's UPDATE: the rows it selects become ``queued`` with a lease; their ids."""
    values = {"state": MessageState.QUEUED, "lease_until": now + lease, "updated_at": now}
    returning = stmt.values(**values).returning(Message.id, Message.due_at)
    claimed = session.execute(returning.execution_options(synchronize_session=False)).all()
    metrics.observe_lag(now, (due_at for _, due_at in claimed))
    return sorted(message_id for message_id, _ in claimed)


def next_due_at(session: Session) -> datetime | None:
    """When the earliest scheduled message falls due (for a dispatcher deciding how long to wait)."""
    return session.scalar(
        select(Message.due_at)
        .where(Message.state == MessageState.SCHEDULED)
        .order_by(Message.due_at, Message.id)
        .limit(1)
    )


def release_stale_claims(session: Session, now: datetime) -> Sequence[int]:
    """Queued messages whose send task never ran (lost enqueue, broker restart) go back to
    ``scheduled``. Safe: ``queued`` means no provider call has begun."""
    return session.scalars(
        update(Message)
        .where(_unlocked(session, _past_lease(MessageState.QUEUED, now)))
        .values(
            state=MessageState.SCHEDULED,
            lease_until=None,
            updated_at=now,
            state_reason="re-queued: send task was lost",
        )
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ).all()


def mark_stuck_sends_unknown(session: Session, now: datetime) -> Sequence[int]:
    """Messages stuck in ``sending`` past their lease may or may not have reached the provider
    (the worker died mid-call): they become ``unknown`` and are reconciled, never resent blindly."""
    return session.scalars(
        update(Message)
        .where(_unlocked(session, _past_lease(MessageState.SENDING, now)))
        .values(
            state=MessageState.UNKNOWN,
            updated_at=now,
            state_reason="worker lost during the provider call; reconciling with the provider",
        )
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ).all()


def _past_lease(state: MessageState, now: datetime) -> Select[int]:
    return select(Message.id).where(Message.state == state, Message.lease_until < now)


def _unlocked(session: Session, ids: Select[int]) -> ColumnElement[bool]:
    """The rows ``ids`` selects, as an UPDATE's condition. On PostgreSQL, rows another
    transaction holds locked are left out (``FOR UPDATE SKIP LOCKED``, inside a CTE so the
    planner cannot update more rows than a LIMIT): two dispatchers never claim the same row, and
    a sweep never waits on a worker's batch. A worker holds its rows through its prepare and call
    transactions, and one frozen there (a paused container, a migrated VM) holds them until it
    runs again: a rescue sweep waiting on them would hold the control worker's process, sweep
    after sweep, until none was left for a crisis reply. A row so held is not lost, its worker
    holds it; a later sweep takes it once let go with its lease still past. SQLite drops FOR
    UPDATE, but the transaction already holds the database's write lock (BEGIN IMMEDIATE)."""
    if is_postgres(session):
        return Message.id == ids.with_for_update(skip_locked=True).cte("unlocked").c.id
    return Message.id.in_(ids.scalar_subquery())
