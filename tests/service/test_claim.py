"""Claiming due messages: exclusive, ordered, and only what is due."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from outreach.db import make_engine, make_session_factory
from outreach.delivery.claim import claim_due, claim_lanes, mark_stuck_sends_unknown, release_stale_claims
from outreach.models import Message, MessageState, utcnow
from outreach.outbox import insert_messages, transition
from tests.support.factories import STAMPED_AT, make_contact, make_message


def _automated(contact_id: int, prefix: str, due: list[datetime]) -> list[dict[str, object]]:
    """Outbox rows of the default (automated) kind, one per due time."""
    return [
        {
            "idempotency_key": f"{prefix}:{i}",
            "contact_id": contact_id,
            "channel": "sms",
            "category": "care",
            "due_at": due_at,
            "body_override": "x",
        }
        for i, due_at in enumerate(due)
    ]


def test_claim_takes_only_due_messages_oldest_first(session_factory: sessionmaker[Session]) -> None:
    now = utcnow()
    with session_factory.begin() as session:
        contact = make_contact(session)
        late = make_message(session, contact, due_at=now - timedelta(minutes=5))
        early = make_message(session, contact, due_at=now - timedelta(minutes=10))
        future = make_message(session, contact, due_at=now + timedelta(minutes=10))
    with session_factory.begin() as session:
        claimed = claim_due(session, now, batch_size=10)
    assert claimed == sorted([early.id, late.id])
    with session_factory() as session:
        assert session.get(Message, future.id).state == MessageState.SCHEDULED  # type: ignore[union-attr]
        assert session.get(Message, early.id).state == MessageState.QUEUED  # type: ignore[union-attr]


def test_answers_to_patients_go_before_a_backlog_due_earlier(session_factory: sessionmaker[Session]) -> None:
    """A campaign's backlog, due earlier and sent at a sender's rate limit, must not hold a
    nurse's answer or the acknowledgement of a patient's text: the claim takes them first, then
    the backlog oldest first."""
    now = datetime(2026, 6, 10, 15, 2, tzinfo=UTC)
    with session_factory.begin() as session:
        contact = make_contact(session)
        wave_due = [now - timedelta(minutes=2) + timedelta(seconds=i) for i in range(30)]
        insert_messages(session, _automated(contact.id, "wave", wave_due), now=now - timedelta(minutes=3))
        acknowledgement = make_message(session, contact, kind="system", due_at=now - timedelta(seconds=60))
        answer = make_message(session, contact, kind="conversational", due_at=now - timedelta(seconds=30))
        later = make_message(session, contact, kind="conversational", due_at=now + timedelta(seconds=30))
        wave = list(
            session.scalars(
                select(Message.id).where(Message.kind == "automated").order_by(Message.due_at)
            )
        )
    with session_factory.begin() as session:
        first = claim_due(session, now, batch_size=10)
    # In that order too: the dispatcher's first send task holds them.
    assert first[:2] == [acknowledgement.id, answer.id]
    assert sorted(first[2:]) == wave[:8]
    with session_factory.begin() as session:
        assert claim_due(session, now, batch_size=10) == wave[8:18]
    with session_factory.begin() as session:
        assert claim_due(session, now, batch_size=50) == wave[18:]
    with session_factory() as session:
        assert session.get(Message, later.id).state == MessageState.SCHEDULED  # type: ignore[union-attr]


def test_a_claim_names_each_lane_and_can_take_one_alone(session_factory: sessionmaker[Session]) -> None:
    """The dispatcher puts what is not automated on a lane of its own, and while the send lane
    is full it claims only that (outreach.delivery.dispatch)."""
    now = datetime(2026, 6, 10, 15, 2, tzinfo=UTC)
    with session_factory.begin() as session:
        contact = make_contact(session)
        insert_messages(session, _automated(contact.id, "wave", [now - timedelta(minutes=1)] * 5), now=now)
        answer = make_message(session, contact, kind="conversational", due_at=now - timedelta(seconds=5))
        help_reply = make_message(session, contact, kind="system", due_at=now - timedelta(seconds=1))
    with session_factory.begin() as session:
        alone = claim_lanes(session, now, batch_size=10, automated=False)
    assert alone.replies == [answer.id, help_reply.id]
    assert alone.automated == []
    with session_factory() as session:
        waiting = session.scalars(select(Message.id).where(Message.state == MessageState.SCHEDULED)).all()
    assert len(waiting) == 5, "the backlog stays scheduled"
    with session_factory.begin() as session:
        rest = claim_lanes(session, now, batch_size=10)
    assert rest.replies == []
    assert sorted(rest.automated) == sorted(waiting)


def test_two_dispatchers_never_claim_the_same_message(session_factory: sessionmaker[Session]) -> None:
    now = utcnow()
    with session_factory.begin() as session:
        contact = make_contact(session)
        insert_messages(session, _automated(contact.id, "race", [now - timedelta(seconds=1)] * 600), now=now)
    claims: list[list[int]] = [[], []]

    def dispatcher(slot: int) -> None:
        while True:
            with session_factory.begin() as session:
                ids = claim_due(session, now, batch_size=25)
            if not ids:
                return
            claims[slot].extend(ids)

    threads = [threading.Thread(target=dispatcher, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = claims[0] + claims[1]
    assert len(everything) == 600
    assert len(set(everything)) == 600, "a message was claimed twice"


def test_insert_is_idempotent_on_the_key(session: Session) -> None:
    contact = make_contact(session)
    row = {
        "idempotency_key": "enrollment:1:step:a",
        "contact_id": contact.id,
        "channel": "sms",
        "category": "care",
        "due_at": utcnow(),
        "body_override": "x",
    }
    assert insert_messages(session, [row], now=STAMPED_AT) == 1
    assert insert_messages(session, [row], now=STAMPED_AT) == 0
    assert session.query(Message).count() == 1


def test_transition_is_conditional(session: Session) -> None:
    message = make_message(session, make_contact(session))
    assert transition(session, message.id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
    assert not transition(session, message.id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)


def test_rescue_returns_lost_claims_and_marks_stuck_sends_unknown(session: Session) -> None:
    now = utcnow()
    contact = make_contact(session)
    lost = make_message(session, contact)
    stuck = make_message(session, contact)
    transition(
        session,
        lost.id,
        [MessageState.SCHEDULED],
        MessageState.QUEUED,
        lease_until=now - timedelta(seconds=1),
        now=now,
    )
    transition(
        session,
        stuck.id,
        [MessageState.SCHEDULED],
        MessageState.SENDING,
        lease_until=now - timedelta(seconds=1),
        now=now,
    )
    assert list(release_stale_claims(session, now)) == [lost.id]
    assert list(mark_stuck_sends_unknown(session, now)) == [stuck.id]
    session.expire_all()
    assert session.get(Message, lost.id).state == MessageState.SCHEDULED  # type: ignore[union-attr]
    assert session.get(Message, stuck.id).state == MessageState.UNKNOWN  # type: ignore[union-attr]


def test_rescue_leaves_rows_a_live_transaction_holds_and_takes_them_once_let_go(pg_url: str) -> None:
    """A worker frozen inside its call transaction (a paused container, a migrated VM) holds its
    batch's rows past their lease. The rescue sweep runs on the control worker: it leaves those
    rows at once instead of waiting on them (sweep after sweep, each would hold a process the
    crisis replies need), takes the rest, and takes them too once the worker lets go."""
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    now = utcnow()
    with factory.begin() as session:
        contact = make_contact(session)
        held, free = (make_message(session, contact) for _ in range(2))
        for message in (held, free):
            transition(
                session, message.id, [MessageState.SCHEDULED], MessageState.SENDING,
                lease_until=now - timedelta(seconds=1), now=now,
            )
    with factory.begin() as frozen:
        frozen.execute(select(Message.id).where(Message.id == held.id).with_for_update())
        with factory.begin() as sweep:
            sweep.execute(text("SET LOCAL lock_timeout = '5s'"))  # waiting would fail the test
            assert list(mark_stuck_sends_unknown(sweep, now)) == [free.id]
    with factory.begin() as sweep:
        assert list(mark_stuck_sends_unknown(sweep, now)) == [held.id]
    engine.dispose()
