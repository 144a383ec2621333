"""Send a batch of claimed messages: prepare them together, take rate-limit slots, call the
provider for each, and record the outcomes together.

Two kinds of short transaction around the provider calls, following healthchecks' ledger
pattern:

1. *prepare* (``outreach.delivery.prepare``): lock, re-check, render, ``queued -> sending`` with an
   attempt row, committed **before** any provider call.
2. *call*, per group of messages whose rate-limit slots fall together (the whole batch when
   the sender is far from its limit, one message at a time when it is near): lock again
   (lock order: ``outreach.outbox``); confirm each is still *our* attempt and still wanted,
   with consent (an opt-out or a reschedule may have committed in between); call the
   provider for each while holding the locks; record the outcomes.

The statements per batch stay the same whatever its size; only the provider calls are one
per message. That is what lets one worker process keep up with hundreds of messages a second.
On PostgreSQL, a batch with more than one sender (SMS and email) sends each sender's messages
on a thread of its own, so a provider that hangs holds up only its own messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from outreach.channels import DeliveryError, Provider
from outreach.config import Settings
from outreach.db import is_postgres
from outreach.delivery import checks
from outreach.delivery.prepare import Prepared, prepare
from outreach.delivery.ratelimit import RateLimitUnavailable, Reservation
from outreach.delivery.record import Accepted, finish_attempt, record_accepts, record_failure
from outreach.models import Message, MessageKind, MessageState, utcnow
from outreach.ops import metrics
from outreach.outbox import lock_contacts_pause_of, lock_messages, transition

log = logging.getLogger(__name__)

# A rate-limit wait longer than this is better spent rescheduling than holding a worker.
MAX_RATE_WAIT_SECONDS = 5.0
RATE_STORE_RETRY_SECONDS = 5.0
# Time kept in hand for locking and re-checking before a rate-limit slot. Slots closer together
# than this share one call transaction.
LOCK_MARGIN_SECONDS = 0.05
# How long one call transaction may hold its contacts' locks before it commits what it has
# sent and locks the rest afresh (an opt-out waiting on one of them should not wait long).
MAX_LOCK_HOLD_SECONDS = 0.2
WINDOW_CLOSED_REASON = "the allowed window closed before the provider call; back to the schedule"
SLOW_PROVIDER_REASON = "the provider is answering slowly; not called, back to the schedule"


class RateLimiter(Protocol):
    def acquire_many(
        self,
        sender: str,
        count: int,
        now: datetime,
        *,
        max_wait: float = ...,
        yield_to_urgent: bool = ...,
        urgent: bool = ...,
    ) -> Reservation:
        """Up to ``count`` consecutive slots, each at most ``max_wait`` seconds away; fewer
        when the next lies further (``outreach.delivery.ratelimit``)."""
        ...

    def use_slot(self, sender: str, ticket: int) -> bool:
        """Whether a yielding slot is still ours (an urgent send may have taken it)."""
        ...


class NoLimit:
    """For tests of other behaviour."""

    def acquire_many(
        self,
        sender: str,
        count: int,
        now: datetime,
        *,
        max_wait: float = 0.0,
        yield_to_urgent: bool = False,
        urgent: bool = False,
    ) -> Reservation:
        return Reservation([0.0] * count)

    def use_slot(self, sender: str, ticket: int) -> bool:
        return True


@dataclass
class Services:
    """What sending needs, built once per process at the entry point."""

    settings: Settings
    session_factory: sessionmaker[Session]
    providers: Mapping[str, Provider]
    limiter: RateLimiter
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Slotted:
    prepared: Prepared
    slot: float  # the ``time.monotonic()`` instant its rate-limit slot opens


def send_message(services: Services, message_id: int) -> str:
    """Process one message id; returns the state it ended in (for logs and tests)."""
    return send_batch(services, [message_id])[message_id]


def send_batch(services: Services, message_ids: Sequence[int]) -> dict[int, str]:
    """Process claimed message ids; returns the state each ended in (or why it was not ours)."""
    batch = prepare(services.session_factory, services.settings, message_ids, services.clock)
    outcomes = dict(batch.outcomes)
    by_sender: dict[str, list[Prepared]] = {}
    for prepared in batch.ready:
        by_sender.setdefault(prepared.sender, []).append(prepared)
    # Past this, what is left is handed back to the schedule instead of holding the worker.
    deadline = time.monotonic() + MAX_RATE_WAIT_SECONDS
    if len(by_sender) > 1 and _row_locking(services):
        outcomes.update(_senders_side_by_side(services, by_sender, deadline))
    else:
        for sender, pending in by_sender.items():
            outcomes.update(_send_for_sender(services, sender, pending, deadline))
    return outcomes


def _row_locking(services: Services) -> bool:
    """PostgreSQL locks rows: two call transactions of one batch go side by side. SQLite
    allows one writer at a time, so there they would only wait for each other."""
    bind = services.session_factory.kw.get("bind")
    return isinstance(bind, Engine) and is_postgres(bind)


def _senders_side_by_side(
    services: Services, by_sender: Mapping[str, Sequence[Prepared]], deadline: float
) -> dict[int, str]:
    """Each sender's messages on a thread of their own, so a provider that hangs holds up only
    its own: a crisis's email alert to on-call staff goes out while Twilio times out on the SMS
    of the same batch, instead of one call timeout later per SMS. Each thread takes its own
    transactions; every outcome is kept, and the first error is raised once all are done."""
    outcomes: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=len(by_sender), thread_name_prefix="sender") as pool:
        running = [
            pool.submit(_send_for_sender, services, sender, pending, deadline)
            for sender, pending in by_sender.items()
        ]
    errors: list[BaseException] = []
    for future in running:
        error = future.exception()
        if error is None:
            outcomes.update(future.result())
        else:
            errors.append(error)
    if errors:
        raise errors[0]
    return outcomes


def _send_for_sender(
    services: Services, sender: str, pending: Sequence[Prepared], deadline: float
) -> dict[int, str]:
    """Take slots a group at a time, call, repeat.

    Slots are reserved only for the next group (those opening within ``LOCK_MARGIN_SECONDS``),
    so a call that ran late pushes the following slots later instead of crowding them: no
    1-second window ever holds more than the sender's rate. A slot further off is booked
    yielding, so that a crisis reply can take it (``outreach.delivery.ratelimit``); crisis
    replies and alerts go first and take their slots one at a time, urgently; then replies to
    patients and staff answers, then automated messages (``prepare.URGENT`` ...).
    """
    outcomes: dict[int, str] = {}
    pending = sorted(pending, key=lambda p: p.rank)
    while pending:
        try:
            slots = _next_slots(services, sender, len(pending), deadline, urgent=pending[0].urgent)
            if not slots.waits:
                waiting = "waiting for the sender's rate limit"
                outcomes.update(
                    _requeue_for_rate(services, [(p.message_id, slots.next_wait, waiting) for p in pending])
                )
                break
            now = time.monotonic()
            group = [Slotted(p, now + wait) for p, wait in zip(pending, slots.waits, strict=False)]
            # Sleep most of the wait before taking the locks, the rest after the re-check, so
            # the provider sees the slot's instant (not the slot plus however long the re-check
            # took) and no lock is held for long.
            services.sleep(max(0.0, group[0].slot - now - LOCK_MARGIN_SECONDS))
            if not all(services.limiter.use_slot(sender, ticket) for ticket in slots.tickets):
                continue  # an urgent send took the slot meanwhile: book again
        except RateLimitUnavailable:
            # The provider was not called: hand these back rather than leave them "sending".
            unavailable = "rate limiter unavailable"
            outcomes.update(
                _requeue_for_rate(
                    services, [(p.message_id, RATE_STORE_RETRY_SECONDS, unavailable) for p in pending]
                )
            )
            break
        outcomes.update(call_group(services, group))
        pending = pending[len(group) :]
    return outcomes


def _next_slots(
    services: Services, sender: str, count: int, deadline: float, *, urgent: bool = False
) -> Reservation:
    """The slots opening within ``LOCK_MARGIN_SECONDS`` (one round trip; at a high rate, the
    whole batch); when none does, the next one alone, if it opens before ``deadline``, booked
    yielding. An urgent message takes one slot, ahead of the yielding ones."""
    limiter = services.limiter
    if urgent:
        budget = max(0.0, deadline - time.monotonic())
        return limiter.acquire_many(sender, 1, services.clock(), max_wait=budget, urgent=True)
    near = limiter.acquire_many(sender, count, services.clock(), max_wait=LOCK_MARGIN_SECONDS)
    if near.waits:
        return near
    budget = max(0.0, deadline - time.monotonic())
    return limiter.acquire_many(sender, 1, services.clock(), max_wait=budget, yield_to_urgent=True)


def _requeue_for_rate(services: Services, deferred: Sequence[tuple[int, float, str]]) -> dict[int, str]:
    """Hand messages back to the schedule instead of blocking a worker for long."""
    with services.session_factory() as session, session.begin():
        now = services.clock()
        for message_id, wait, reason in deferred:
            _hand_back(session, now, message_id, timedelta(seconds=wait), reason)
    return {message_id: MessageState.SCHEDULED for message_id, _, _ in deferred}


def _hand_back(session: Session, now: datetime, message_id: int, after: timedelta, reason: str) -> str:
    """``sending -> scheduled`` before any provider call: the attempt did not happen."""
    transition(
        session,
        message_id,
        [MessageState.SENDING],
        MessageState.SCHEDULED,
        reason=reason,
        due_at=now + after,
        attempts=Message.attempts - 1,
        lease_until=None,
        now=now,
    )
    finish_attempt(session, message_id, now, outcome="deferred", detail=reason)
    return MessageState.SCHEDULED


# What the last look before the call and the recording of its outcome read of each message
# (``_still_ours``, ``checks.still_wanted`` / ``consent_problem``, ``record_failure`` and its
# effects): not the rendered body, addresses and provider fields that prepare wrote.
CALL_COLUMNS = (
    Message.id, Message.state, Message.attempts, Message.max_attempts, Message.contact_id,
    Message.kind, Message.channel, Message.category, Message.context, Message.enrollment_id,
    Message.appointment_id, Message.appointment_version, Message.not_after, Message.to_address,
)


def _still_ours(message: Message | None, attempt: int) -> bool:
    """Still sending, and still *our* attempt: a worker that stalled past its lease may find the
    message rescued, reconciled and re-claimed by another worker, which must be the only one
    to send it."""
    return message is not None and message.state == MessageState.SENDING and message.attempts == attempt


def call_group(services: Services, group: Sequence[Slotted]) -> dict[int, str]:
    """The provider calls of one group, in as few transactions as keep each lock short.

    A transaction ends after the call that takes it past ``MAX_LOCK_HOLD_SECONDS``: with a
    fast provider a whole group shares one, with a slow one each call has its own, so an
    opt-out waits for one provider answer at most, never for a whole batch of them.
    """
    outcomes: dict[int, str] = {}
    pending = list(group)
    while pending:
        done = _call_some(services, pending, outcomes)
        pending = pending[done:]
    return outcomes


def _call_some(services: Services, group: Sequence[Slotted], outcomes: dict[int, str]) -> int:
    """Calls for the first items of ``group`` in one transaction; returns how many were handled."""
    accepted: list[Accepted] = []
    try:
        return _call_some_in_transaction(services, group, outcomes, accepted)
    except SQLAlchemyError:
        if accepted:
            _record_accepts_again(services, accepted)
        raise


def _record_accepts_again(services: Services, accepted: Sequence[Accepted]) -> None:
    """The provider took these messages, but the transaction that was to record it failed (a
    dropped connection, a deadlock with another writer). Record them in a transaction of their
    own, so a message that went out is known to have gone out at once, instead of staying
    ``sending`` until the rescue sweep and reconciliation find it at the provider. The update
    is conditional on ``sending``, so it is harmless if the first commit did land."""
    try:
        with services.session_factory() as session, session.begin():
            record_accepts(session, accepted)
    except SQLAlchemyError as error:
        # Left to the rescue sweep and reconciliation; only the type: messages may quote data.
        log.error(
            "could not record %d accepted sends after a failed transaction (%s); "
            "reconciliation will find them", len(accepted), type(error).__name__,
        )


def _call_some_in_transaction(
    services: Services, group: Sequence[Slotted], outcomes: dict[int, str], accepted: list[Accepted]
) -> int:
    ids = [item.prepared.message_id for item in group]
    handled = 0
    with services.session_factory() as session, session.begin():
        # Lock order: see outreach.outbox.
        paused = lock_contacts_pause_of(session, ids, [MessageState.SENDING])
        messages = {m.id: m for m in lock_messages(session, ids, CALL_COLUMNS)}
        facts = checks.load_call_facts(session, list(messages.values()))
        locked_at = time.monotonic()
        for item in group:
            handled += 1
            message = messages.get(item.prepared.message_id)
            outcomes[item.prepared.message_id] = _check_and_call(
                services, session, facts, paused, message, item, accepted
            )
            if time.monotonic() - locked_at > MAX_LOCK_HOLD_SECONDS:
                break
        record_accepts(session, accepted)
    return handled


def _check_and_call(
    services: Services,
    session: Session,
    facts: checks.Facts,
    paused: Mapping[int, datetime | None],
    message: Message | None,
    item: Slotted,
    accepted: list[Accepted],
) -> str:
    prepared = item.prepared
    if not _still_ours(message, prepared.attempt):
        return "lost-race"
    assert message is not None
    if message.contact_id is not None:
        stopped = checks.still_wanted(facts, message)
        reason = stopped.reason if stopped else checks.consent_problem(facts, message)
        if reason:
            transition(
                session, message.id, [MessageState.SENDING], MessageState.CANCELLED, reason=reason,
                now=services.clock(),
            )
            finish_attempt(session, message.id, services.clock(), outcome="skipped", detail=reason)
            return MessageState.CANCELLED
        if message.kind == MessageKind.AUTOMATED and paused.get(message.contact_id) is not None:
            # A crisis text came in after prepare: automated messages wait for staff.
            return _hand_back(
                session, services.clock(), message.id, checks.PAUSE_RECHECK, checks.PAUSE_HOLD_REASON
            )
    remaining = item.slot - time.monotonic()
    if remaining > 0:
        services.sleep(remaining)
    if prepared.send_by is not None and services.clock() >= prepared.send_by:
        # The window closed while this waited for its rate-limit slot (seconds at most): back
        # to the schedule, where prepare holds it until the next opening.
        return _hand_back(session, services.clock(), message.id, timedelta(0), WINDOW_CLOSED_REASON)
    if time.monotonic() + services.settings.call_timeout(prepared.outgoing.channel) > prepared.lease_ends:
        # A call begun now could outlast the send lease. Earlier calls of this batch took
        # that long (a provider timing out on each): the message was never called, so it goes
        # back to the schedule as not attempted, with a fresh lease next time, rather than
        # waiting here until the rescue sweep must assume the worker lost it.
        return _hand_back(session, services.clock(), message.id, timedelta(0), SLOW_PROVIDER_REASON)
    return _call(services, session, message, prepared, accepted)


def _call(
    services: Services, session: Session, message: Message, prepared: Prepared, accepted: list[Accepted]
) -> str:
    provider = services.providers[prepared.outgoing.channel]
    retry_base = timedelta(seconds=services.settings.retry_backoff_seconds)
    channel = prepared.outgoing.channel
    try:
        result = provider.send(prepared.outgoing)
    except DeliveryError as error:
        metrics.count_provider_error(channel, error.code)
        return record_failure(session, message, error, services.clock(), retry_base)
    except Exception as exc:
        metrics.count_provider_error(channel, "unexpected")
        # An adapter bug after the request may have left: we cannot know, so reconcile.
        # Only the type is logged: a library's message may quote the number or the text.
        kind = type(exc).__name__
        log.error("provider adapter raised %s unexpectedly (message id %s)", kind, message.id)
        unexpected = DeliveryError(f"unexpected adapter error ({kind})", permanent=False, ambiguous=True)
        return record_failure(session, message, unexpected, services.clock(), retry_base)
    metrics.PROVIDER_CALLS.labels(channel, "accepted").inc()
    accepted.append(Accepted(message.id, result, services.clock()))
    return MessageState.SENT
