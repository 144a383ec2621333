"""The first half of a send, for a batch of claimed messages, in one short transaction.

Lock (order: ``outreach.outbox``); re-check everything that may have changed since each
message was scheduled (``checks.decide``, with the facts of the whole batch loaded once);
render; then ``queued -> sending`` with an attempt row, committed **before** any provider
call, so a crash mid-call leaves a visible ``sending`` row that the rescue sweep turns into
``unknown`` (reconciled, never resent).

The statements do not grow with the batch: one per kind of row read, one for the ``sending``
rows and one for the attempts. Holds and stops (outside the window, consent gone, ...) are
rarer and written one by one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, insert, text, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.channels import Outgoing
from outreach.config import Settings
from outreach.db import is_postgres
from outreach.delivery import checks
from outreach.delivery import compose as outgoing_builder
from outreach.models import Message, MessageAttempt, MessageKind, MessageState
from outreach.outbox import lock_contacts_of, lock_messages, transition
from outreach.replies import responses

# At a sender's rate limit a send task's batch goes out one slot at a time, and what does not
# fit in its few seconds goes back to the schedule: so a crisis reply or alert goes first, then
# what a person wrote or asked for (a staff answer, the reply to a patient's text: HELP, an
# opt-out's confirmation, the acknowledgement), then automated messages. In id order alone a
# nurse's answer, the newest row, came last and was handed back again and again while a
# campaign's backlog went out at one a second (minutes, in the embedded demo).
URGENT, REPLY, AUTOMATED = 0, 1, 2


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
    # The order a send task's messages take their sender's slots in, lowest first (``URGENT``,
    # ``REPLY``, ``AUTOMATED``).
    rank: int = AUTOMATED

    @property
    def urgent(self) -> bool:
        """A crisis reply or an on-call alert: it takes a rate-limit slot ahead of the sends
        that booked theirs (``outreach.delivery.ratelimit``)."""
        return self.rank == URGENT


@dataclass
class PreparedBatch:
    ready: list[Prepared] = field(default_factory=list)
    # Where the others ended (held, stopped, failed to render) or why they were not ours.
    outcomes: dict[int, str] = field(default_factory=dict)


_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = MessageAttempt.__table__  # type: ignore[assignment]
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

# PostgreSQL: the same writes as one statement each over the batch's values (one plan and one
# round trip for the batch, instead of an execution per message in a pipeline).
_TO_SENDING_PG = text(
    """UPDATE messages AS m
       SET state = :sending, state_reason = NULL, updated_at = :now, attempts = v.attempt,
           lease_until = :lease, to_address = v.to_address, subject = v.subject, body = v.body,
           correlation_id = v.correlation_id
       FROM unnest(CAST(:ids AS integer[]), CAST(:attempts AS integer[]), CAST(:tos AS text[]),
                   CAST(:subjects AS text[]), CAST(:bodies AS text[]), CAST(:correlations AS text[]))
            AS v(id, attempt, to_address, subject, body, correlation_id)
       WHERE m.id = v.id AND m.state = :queued"""
).bindparams(sending=str(MessageState.SENDING), queued=str(MessageState.QUEUED))
_ATTEMPTS_STARTED_PG = text(
    """INSERT INTO message_attempts (message_id, number, started_at)
       SELECT id, number, :now FROM unnest(CAST(:ids AS integer[]), CAST(:numbers AS integer[]))
            AS v(id, number)"""
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
        # Each statement reads its own snapshot. A message that was not queued when its contact
        # was locked, yet is queued now, was claimed again meanwhile for another task (this one
        # is a stale or redelivered task: its worker died and the rescue sweep handed the
        # message back to the schedule). Its contact is not locked here, and the task of the new
        # claim will send it: it is left alone, never judged without its contact.
        locked = {contact.id for contact in contacts}
        for message in queued:
            if message.contact_id is not None and message.contact_id not in locked:
                batch.outcomes[message.id] = "claimed again"
        queued = [m for m in queued if m.id not in batch.outcomes]
        if not queued:
            return batch
        # Read before ``now``, so the lease this process counts ends no later than the stamped one.
        lease_ends = time.monotonic() + settings.send_lease_seconds
        now = clock()
        facts = checks.load_facts(session, queued, contacts, now)
        for message in queued:
            prepared = _prepare_one(session, settings, facts, message, now, lease_ends, batch.outcomes)
            if prepared is not None:
                batch.ready.append(prepared)
        # The rows are locked and were read as queued above: every update matches.
        _to_sending(session, batch.ready, now, now + timedelta(seconds=settings.send_lease_seconds))
    return batch


def _to_sending(session: Session, ready: Sequence[Prepared], now: datetime, lease: datetime) -> None:
    """``queued -> sending`` with the rendered message and a started attempt row, for each of
    ``ready``: two statements whatever their number."""
    if not ready:
        return
    if is_postgres(session):
        ids = [p.message_id for p in ready]
        attempts = [p.attempt for p in ready]
        session.execute(
            _TO_SENDING_PG,
            {
                "ids": ids,
                "attempts": attempts,
                "now": now,
                "lease": lease,
                "tos": [p.outgoing.to for p in ready],
                "subjects": [p.outgoing.subject for p in ready],
                "bodies": [p.outgoing.body for p in ready],
                "correlations": [p.outgoing.correlation_id for p in ready],
            },
        )
        session.execute(_ATTEMPTS_STARTED_PG, {"ids": ids, "numbers": attempts, "now": now})
        return
    rows: list[dict[str, Any]] = [
        {
            "b_id": p.message_id,
            "b_now": now,
            "b_attempt": p.attempt,
            "b_lease": lease,
            "b_to": p.outgoing.to,
            "b_subject": p.outgoing.subject,
            "b_body": p.outgoing.body,
            "b_correlation": p.outgoing.correlation_id,
        }
        for p in ready
    ]
    session.execute(_TO_SENDING, rows)
    started = [{"message_id": p.message_id, "number": p.attempt, "started_at": now} for p in ready]
    session.execute(insert(_ATTEMPTS), started)


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
        message.id,
        outgoing,
        decision.sender,
        message.attempts + 1,
        decision.send_by,
        lease_ends,
        rank=_rank(message),
    )


def _rank(message: Message) -> int:
    if responses.is_urgent_key(message.idempotency_key):
        return URGENT
    return AUTOMATED if message.kind == MessageKind.AUTOMATED else REPLY
