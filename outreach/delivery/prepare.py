"""The first half of a send, for a batch of claimed messages, in one short transaction.

Lock (order: ``outreach.outbox``); re-check everything that may have changed since each
message was scheduled (``checks.decide``, with the facts of the whole batch loaded once);
render; then ``queued -> sending`` with an attempt row, committed **before** any provider
call, so a crash mid-call leaves a visible ``sending`` row that the rescue sweep turns into
``unknown`` (reconciled, never resent).

The statements do not grow with the batch: one per kind of row read, one executemany for
the ``sending`` rows and one for the attempts. Holds and stops (outside the window, consent
gone, ...) are rarer and written one by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.channels import Outgoing
from outreach.config import Settings
from outreach.delivery import checks
from outreach.delivery import compose as outgoing_builder
from outreach.models import Message, MessageAttempt, MessageState
from outreach.outbox import lock_contacts_of, lock_messages, transition


@dataclass(frozen=True)
class Prepared:
    """A message ready for its provider call: attempt ``attempt`` is recorded as ``sending``."""

    message_id: int
    outgoing: Outgoing
    sender: str
    attempt: int
    send_by: datetime | None = None  # the allowed window closes then (``checks.Go``)
    # The ``time.monotonic()`` instant the send lease ends, read no later than the lease was
    # stamped: past it the rescue sweep may take the message, so no call may still be running.
    lease_ends: float = float("inf")


@dataclass
class PreparedBatch:
    ready: list[Prepared] = field(default_factory=list)
    # Where the others ended (held, stopped, failed to render) or why they were not ours.
    outcomes: dict[int, str] = field(default_factory=dict)


_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
# Bound names differ from the column names: SQLAlchemy reserves those for the SET clause.
_TO_SENDING = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("b_id"), _MESSAGES.c.state == str(MessageState.QUEUED))
    .values(
        state=str(MessageState.SENDING),
        state_reason=None,
        updated_at=bindparam("b_now"),
        attempts=bindparam("b_attempt"),
        lease_until=bindparam("b_lease"),
        to_address=bindparam("b_to"),
        subject=bindparam("b_subject"),
        body=bindparam("b_body"),
        correlation_id=bindparam("b_correlation"),
    )
)


def prepare(
    session_factory: sessionmaker[Session],
    settings: Settings,
    message_ids: Sequence[int],
    clock: Callable[[], datetime],
) -> PreparedBatch:
    """Prepare the queued messages among ``message_ids``."""
    batch = PreparedBatch()
    ids = sorted(set(message_ids))
    with session_factory() as session, session.begin():
        # Kept referenced: the session holds loaded rows weakly, and rendering finds the
        # contacts (and the facts' appointments) in its identity map.
        contacts = lock_contacts_of(session, ids, [MessageState.QUEUED])
        messages = lock_messages(session, ids)
        found = {m.id for m in messages}
        batch.outcomes.update({i: "missing" for i in ids if i not in found})
        # Another state means a duplicate task: someone else has (or had) the message.
        batch.outcomes.update({m.id: str(m.state) for m in messages if m.state != MessageState.QUEUED})
        queued = [m for m in messages if m.state == MessageState.QUEUED]
        if not queued:
            return batch
        # Read before ``now``, so the lease this process counts ends no later than the stamped one.
        lease_ends = time.monotonic() + settings.send_lease_seconds
        now = clock()
        facts = checks.load_facts(session, queued, contacts, now)
        rows: list[dict[str, Any]] = []
        for message in queued:
            prepared = _prepare_one(session, settings, facts, message, now, lease_ends, batch.outcomes)
            if prepared is None:
                continue
            batch.ready.append(prepared)
            outgoing = prepared.outgoing
            rows.append(
                {
                    "b_id": message.id,
                    "b_now": now,
                    "b_attempt": prepared.attempt,
                    "b_lease": now + timedelta(seconds=settings.send_lease_seconds),
                    "b_to": outgoing.to,
                    "b_subject": outgoing.subject,
                    "b_body": outgoing.body,
                    "b_correlation": outgoing.correlation_id,
                }
            )
        if rows:
            # The rows are locked and were read as queued above: every update matches.
            session.execute(_TO_SENDING, rows)
            session.execute(
                insert(MessageAttempt),
                [{"message_id": p.message_id, "number": p.attempt, "started_at": now} for p in batch.ready],
            )
    return batch


def _prepare_one(
    session: Session,
    settings: Settings,
    facts: checks.Facts,
    message: Message,
    now: datetime,
    lease_ends: float,
    outcomes: dict[int, str],
) -> Prepared | None:
    decision = checks.decide(facts, settings, message, now)
    if isinstance(decision, checks.Hold):
        transition(
            session,
            message.id,
            [MessageState.QUEUED],
            MessageState.SCHEDULED,
            reason=decision.reason,
            due_at=decision.until,
            lease_until=None,
            now=now,
        )
        outcomes[message.id] = MessageState.SCHEDULED
        return None
    if isinstance(decision, checks.Stop):
        transition(
            session, message.id, [MessageState.QUEUED], decision.state, reason=decision.reason, now=now
        )
        outcomes[message.id] = decision.state
        return None
    try:
        outgoing = outgoing_builder.build(session, settings, message, decision.to, now, decision.send_by)
    except outgoing_builder.RenderFailure as exc:
        transition(session, message.id, [MessageState.QUEUED], MessageState.FAILED, reason=str(exc), now=now)
        outcomes[message.id] = MessageState.FAILED
        return None
    # A later capped message of this batch for the same contact must count this one.
    facts.counted_send(message, now)
    return Prepared(
        message.id, outgoing, decision.sender, message.attempts + 1, decision.send_by, lease_ends
    )
