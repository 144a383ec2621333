"""The dispatcher loop: what it claims, how it chunks, and when it holds back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings
from outreach.delivery import dispatch
from outreach.delivery.send import NoLimit, Services
from outreach.models import Message, MessageState, utcnow
from outreach.outbox import insert_messages
from tests.support.factories import make_contact


def _due(factory: sessionmaker[Session], count: int, kind: str = "automated") -> None:
    now = utcnow()
    with factory.begin() as session:
        contact = make_contact(session)
        insert_messages(
            session,
            [
                {
                    "idempotency_key": f"{kind}:{n}",
                    "contact_id": contact.id,
                    "channel": "sms",
                    "category": "care",
                    "kind": kind,
                    "body_override": "x",
                    "due_at": now - timedelta(seconds=1),
                }
                for n in range(count)
            ],
            now=now,
        )


def _states(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        rows = session.execute(select(Message.state, func.count()).group_by(Message.state)).all()
    return {str(state): int(n) for state, n in rows}


def _services(settings: Settings, factory: sessionmaker[Session]) -> Services:
    return Services(settings=settings, session_factory=factory, providers={}, limiter=NoLimit())


def test_due_rows_are_claimed_and_published_in_chunks(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    _due(session_factory, dispatch.CHUNK * 2 + 7)
    published: list[Sequence[int]] = []
    total = dispatch.dispatch_due(_services(settings, session_factory), published.extend)
    assert total == dispatch.CHUNK * 2 + 7
    assert [len(chunk) for chunk in published] == [dispatch.CHUNK, dispatch.CHUNK, 7]
    assert _states(session_factory) == {MessageState.QUEUED: total}


def test_a_small_claim_is_still_spread_over_two_tasks(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """A burst smaller than two full tasks goes to two pool processes, not one."""
    _due(session_factory, 61)
    published: list[Sequence[int]] = []
    dispatch.dispatch_due(_services(settings, session_factory), published.extend)
    assert [len(chunk) for chunk in published] == [31, 30]
    assert len({i for chunk in published for i in chunk}) == 61, "each claimed id in one task"


def test_a_full_broker_queue_leaves_due_rows_scheduled(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Workers already have a backlog of send tasks: claiming more would only lease rows to a
    queue. They stay scheduled (cancellable, not leased) until the queue drains."""
    _due(session_factory, 30)
    published: list[Sequence[int]] = []
    services = _services(settings, session_factory)

    assert dispatch.dispatch_due(services, published.extend, waiting=lambda: dispatch.MAX_WAITING_TASKS) == 0
    assert published == []
    assert _states(session_factory) == {MessageState.SCHEDULED: 30}

    almost_full = dispatch.MAX_WAITING_TASKS - 1
    assert dispatch.dispatch_due(services, published.extend, waiting=lambda: almost_full) == 30
    assert _states(session_factory) == {MessageState.QUEUED: 30}


def test_what_is_not_automated_goes_on_the_replies_lane(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Staff's answers, HELP and the acknowledgements get send tasks of their own, on the lane
    send workers take first: never queued behind a campaign's send tasks."""
    _due(session_factory, 40)
    _due(session_factory, 3, kind="conversational")
    sends: list[Sequence[int]] = []
    replies: list[Sequence[int]] = []
    total = dispatch.dispatch_due(
        _services(settings, session_factory), sends.extend, enqueue_replies=replies.extend
    )
    assert total == 43
    assert [len(chunk) for chunk in replies] == [2, 1]
    assert [len(chunk) for chunk in sends] == [20, 20]
    with session_factory() as session:
        kinds = {row.id: row.kind for row in session.execute(select(Message.id, Message.kind))}
    assert {kinds[i] for chunk in replies for i in chunk} == {"conversational"}
    assert {kinds[i] for chunk in sends for i in chunk} == {"automated"}


def test_a_full_send_lane_does_not_hold_back_the_replies(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """A backlog of send tasks stops the dispatcher claiming automated messages, not a nurse's
    answer; a full replies lane stops both (workers take it first: automated rows claimed then
    would only wait behind it, leased)."""
    _due(session_factory, 30)
    _due(session_factory, 2, kind="conversational")
    services = _services(settings, session_factory)
    sends: list[Sequence[int]] = []
    replies: list[Sequence[int]] = []
    full = dispatch.MAX_WAITING_TASKS

    def dispatch_with(sends_waiting: int, replies_waiting: int) -> int:
        return dispatch.dispatch_due(
            services, sends.extend, enqueue_replies=replies.extend,
            waiting=lambda: sends_waiting, waiting_replies=lambda: replies_waiting,
        )

    assert dispatch_with(sends_waiting=full, replies_waiting=full) == 0
    assert dispatch_with(sends_waiting=0, replies_waiting=full) == 0
    assert _states(session_factory) == {MessageState.SCHEDULED: 32}

    assert dispatch_with(sends_waiting=full, replies_waiting=0) == 2
    assert sends == []
    assert sum(len(chunk) for chunk in replies) == 2
    assert _states(session_factory) == {MessageState.SCHEDULED: 30, MessageState.QUEUED: 2}


def test_a_full_replies_lane_is_looked_at_again_after_a_pause(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Replies due and their lane full, nothing else due: the dispatcher waits for the lane
    between looks instead of spinning on the broker and the database for its whole run."""
    _due(session_factory, 30, kind="system")
    looks: list[int] = []

    def replies_waiting() -> int:
        looks.append(1)
        return dispatch.MAX_WAITING_TASKS

    published: list[Sequence[int]] = []
    services = _services(settings, session_factory)
    claimed = dispatch.dispatch_due(services, published.extend, waiting_replies=replies_waiting, run_for=0.3)
    assert claimed == 0
    assert published == []
    # A look every BACKPRESSURE_POLL (50 ms) at most: 7 in 0.3 s, fewer on a busy machine.
    assert 1 <= len(looks) <= 0.3 / dispatch.BACKPRESSURE_POLL + 2
