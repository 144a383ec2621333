"""Retention: after ``retention_days``, what a message *said* is cleared and what *happened* is kept.

HIPAA's minimum-necessary standard argues against keeping the text of every reminder and every
reply for years: once staff no longer need it to answer or investigate, it is only risk. Its
documentation rule (and the TCPA's need to prove consent) argues for keeping the record that a
message was sent: to whom, when, from which template, on which channel, with which outcome and
every provider status event; and the consent ledger and the audit trail, which stay whole (they
are append-only in the database itself). So this clears:

- a message's body, subject, staff-written text and template context (the context may hold an
  appointment's details);
- a patient's inbound text, once processed;
- the text copied into a staff inbox item, once handled (an open item keeps it: someone must
  still read it);

and never touches a message that may still be sent (scheduled, queued, sending, unknown).

Staff leave traces too, kept only as long as they serve: a failed sign-in (an email address
and a network address) for ``LOGIN_FAILURES_KEPT``, long after throttling stopped counting it
but while someone may still look into a guessing attempt; a signed-in browser's row for a day
after the session ended (signed out, revoked, or idle past ``session_idle_minutes``).

Works in batches by primary key, each its own short transaction, so a first run over a million
old rows neither holds locks for long nor builds one huge transaction; a second run finds
nothing left to clear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, String, cast, delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.models import (
    TERMINAL_STATES,
    InboundMessage,
    InboxItem,
    InboxState,
    LoginFailure,
    Message,
    MessageState,
    WebSession,
)

# States after which nothing will be sent: safe to forget what would have been said.
SETTLED = TERMINAL_STATES | {MessageState.SENT}
BATCH = 1000
EMPTY_CONTEXT = "{}"
# One batch: the ids after the given one that it cleared.
_Step = Callable[[Session, int], list[int]]


LOGIN_FAILURES_KEPT = timedelta(days=30)
ENDED_SESSIONS_KEPT = timedelta(days=1)


@dataclass
class Forgotten:
    login_failures: int = 0
    web_sessions: int = 0


def forget_staff_traces(factory: sessionmaker[Session], now: datetime, idle: timedelta) -> Forgotten:
    """Delete old failed sign-ins and the rows of sessions that ended more than a day ago."""
    ended_before = now - ENDED_SESSIONS_KEPT
    with factory.begin() as session:
        failures: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            delete(LoginFailure).where(LoginFailure.at < now - LOGIN_FAILURES_KEPT)
        )
        sessions: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            delete(WebSession).where(
                or_(WebSession.revoked_at < ended_before, WebSession.last_seen_at < ended_before - idle)
            )
        )
    return Forgotten(failures.rowcount, sessions.rowcount)


@dataclass
class Cleared:
    messages: int = 0
    inbound: int = 0
    inbox_items: int = 0


def clear_old_content(
    factory: sessionmaker[Session], now: datetime, days: int, batch: int = BATCH
) -> Cleared:
    """Clear content older than ``days`` (by each row's last change); ``days == 0`` keeps all."""
    cleared = Cleared()
    if days <= 0:
        return cleared
    cutoff = now - timedelta(days=days)
    cleared.messages = _in_batches(factory, batch, lambda s, after: _messages(s, cutoff, after, batch))
    cleared.inbound = _in_batches(factory, batch, lambda s, after: _inbound(s, cutoff, after, batch))
    cleared.inbox_items = _in_batches(factory, batch, lambda s, after: _inbox(s, cutoff, after, batch))
    return cleared


def _in_batches(factory: sessionmaker[Session], batch: int, step: _Step) -> int:
    total, after = 0, 0
    while True:
        with factory.begin() as session:
            ids = step(session, after)
        total += len(ids)
        if len(ids) < batch:
            return total
        after = max(ids)


def _messages(session: Session, cutoff: datetime, after: int, batch: int) -> list[int]:
    has_content = or_(
        Message.body.is_not(None),
        Message.subject.is_not(None),
        Message.body_override.is_not(None),
        cast(Message.context, String) != EMPTY_CONTEXT,
    )
    # updated_at stays as it was: it is when the message last changed, part of what happened.
    cleared: dict[str, object] = {
        "body": None,
        "subject": None,
        "body_override": None,
        "context": {},
        "updated_at": Message.updated_at,
    }
    settled = Message.state.in_(SETTLED)
    return _clear(
        session, Message, [settled, Message.updated_at < cutoff, has_content], cleared, after, batch
    )


def _inbound(session: Session, cutoff: datetime, after: int, batch: int) -> list[int]:
    old = [
        InboundMessage.received_at < cutoff,
        InboundMessage.processed_at.is_not(None),
        InboundMessage.body != "",
    ]
    return _clear(session, InboundMessage, old, {"body": ""}, after, batch)


def _inbox(session: Session, cutoff: datetime, after: int, batch: int) -> list[int]:
    old = [InboxItem.state == InboxState.HANDLED, InboxItem.handled_at < cutoff, InboxItem.text != ""]
    return _clear(session, InboxItem, old, {"text": ""}, after, batch)


def _clear(
    session: Session,
    model: type[Message] | type[InboundMessage] | type[InboxItem],
    conditions: list[ColumnElement[bool]],
    values: dict[str, object],
    after: int,
    batch: int,
) -> list[int]:
    """One batch: the next ``batch`` matching rows after id ``after``, cleared. The update
    repeats the conditions, so a row that changed in between (a message re-sent) is left."""
    ids = list(
        session.scalars(select(model.id).where(model.id > after, *conditions).order_by(model.id).limit(batch))
    )
    if ids:
        session.execute(
            update(model)
            .where(model.id.in_(ids), *conditions)
            .values(values)
            .execution_options(synchronize_session=False)
        )
    return ids
