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

Works in batches by primary key, each its own short transaction, so a first run over a million
old rows neither holds locks for long nor builds one huge transaction; a second run finds
nothing left to clear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, cast, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.models import InboundMessage, InboxItem, InboxState, Message, MessageState

# States after which nothing will be sent: safe to forget what would have been said.
SETTLED = (
    MessageState.SENT,
    MessageState.DELIVERED,
    MessageState.UNDELIVERED,
    MessageState.FAILED,
    MessageState.CANCELLED,
    MessageState.SKIPPED,
    MessageState.EXPIRED,
)
BATCH = 1000
EMPTY_CONTEXT = "{}"
# One batch: the ids after the given one that it cleared.
_Step = Callable[[Session, int], list[int]]


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
    ids = list(
        session.scalars(
            select(Message.id)
            .where(Message.id > after, Message.state.in_(SETTLED), Message.updated_at < cutoff, has_content)
            .order_by(Message.id)
            .limit(batch)
        )
    )
    if ids:
        # updated_at stays: it is when the message last changed, part of what happened.
        session.execute(
            update(Message)
            .where(Message.id.in_(ids), Message.state.in_(SETTLED))
            .values(body=None, subject=None, body_override=None, context={}, updated_at=Message.updated_at)
            .execution_options(synchronize_session=False)
        )
    return ids


def _inbound(session: Session, cutoff: datetime, after: int, batch: int) -> list[int]:
    ids = list(
        session.scalars(
            select(InboundMessage.id)
            .where(
                InboundMessage.id > after,
                InboundMessage.received_at < cutoff,
                InboundMessage.processed_at.is_not(None),
                InboundMessage.body != "",
            )
            .order_by(InboundMessage.id)
            .limit(batch)
        )
    )
    if ids:
        session.execute(
            update(InboundMessage)
            .where(InboundMessage.id.in_(ids))
            .values(body="")
            .execution_options(synchronize_session=False)
        )
    return ids


def _inbox(session: Session, cutoff: datetime, after: int, batch: int) -> list[int]:
    ids = list(
        session.scalars(
            select(InboxItem.id)
            .where(
                InboxItem.id > after,
                InboxItem.state == InboxState.HANDLED,
                InboxItem.handled_at < cutoff,
                InboxItem.text != "",
            )
            .order_by(InboxItem.id)
            .limit(batch)
        )
    )
    if ids:
        session.execute(
            update(InboxItem)
            .where(InboxItem.id.in_(ids))
            .values(text="")
            .execution_options(synchronize_session=False)
        )
    return ids
