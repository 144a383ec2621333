"""Status callbacks stored by the webhook and applied in batches: once each, forward only,
nothing lost when the applier dies between storing and applying."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.channels.twilio import callbacks
from outreach.delivery import ingest
from outreach.models import Message, MessageEvent, MessageState
from outreach.outbox import transition
from tests.support.factories import make_contact, make_message

NOW = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)


def _sent(factory: sessionmaker[Session], n: int = 0) -> int:
    with factory.begin() as session:
        message = make_message(session, make_contact(session, phone=f"+1415555{n:04d}"))
        transition(
            session,
            message.id,
            [MessageState.SCHEDULED],
            MessageState.SENT,
            provider_id=_sid(n),
            correlation_id=f"{n:032x}",
        )
        return message.id


def _sid(n: int) -> str:
    return f"SM{n:032x}"


def _store(factory: sessionmaker[Session], status: str, n: int = 0, correlated: bool = True) -> None:
    event = callbacks.parse_status_callback(
        {"MessageSid": _sid(n), "MessageStatus": status}, f"{n:032x}" if correlated else None
    )
    with factory.begin() as session:
        ingest.store(session, [(event, NOW)])


def _apply(factory: sessionmaker[Session]) -> int:
    return ingest.apply_pending(factory, lambda: NOW + timedelta(seconds=1), run_for=60)


def _state(factory: sessionmaker[Session], message_id: int) -> tuple[str, str | None, list[str]]:
    with factory() as session:
        message = session.get_one(Message, message_id)
        events = session.scalars(
            select(MessageEvent.status).where(MessageEvent.message_id == message_id).order_by(MessageEvent.id)
        ).all()
        return message.state, message.provider_status, list(events)


def _waiting(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return ingest.waiting(session)


def test_a_stored_callback_moves_its_message_only_when_applied(
    session_factory: sessionmaker[Session],
) -> None:
    message_id = _sent(session_factory)
    _store(session_factory, "delivered")
    assert _state(session_factory, message_id) == (MessageState.SENT, None, [])

    assert _apply(session_factory) == 1

    assert _state(session_factory, message_id) == (MessageState.DELIVERED, "delivered", ["delivered"])
    assert _waiting(session_factory) == 0


def test_duplicate_callbacks_are_each_kept_and_change_the_message_once(
    session_factory: sessionmaker[Session],
) -> None:
    message_id = _sent(session_factory)
    _store(session_factory, "delivered")
    _store(session_factory, "delivered")
    _apply(session_factory)
    _store(session_factory, "delivered")  # Twilio retried after we had applied
    _apply(session_factory)

    assert _state(session_factory, message_id) == (
        MessageState.DELIVERED,
        "delivered",
        ["delivered", "delivered", "delivered"],
    )


@pytest.mark.parametrize("apply_between", [False, True], ids=["one batch", "two batches"])
def test_reordered_callbacks_never_move_a_message_backward(
    session_factory: sessionmaker[Session], apply_between: bool
) -> None:
    message_id = _sent(session_factory)
    _store(session_factory, "delivered")
    if apply_between:
        _apply(session_factory)
    _store(session_factory, "sent")
    _store(session_factory, "undelivered")
    _store(session_factory, "queued")
    _apply(session_factory)

    state, provider_status, events = _state(session_factory, message_id)
    assert (state, provider_status) == (MessageState.DELIVERED, "delivered")
    assert events == ["delivered", "sent", "undelivered", "queued"]


def test_a_callback_stored_before_a_crash_is_applied_once_by_the_next_run(
    session_factory: sessionmaker[Session],
) -> None:
    message_id = _sent(session_factory)
    _store(session_factory, "delivered")

    class Killed(Exception):
        pass

    # The applier dies after applying but before its commit: the transaction rolls back.
    with pytest.raises(Killed), session_factory.begin() as session:
        assert ingest.apply_batch(session, NOW).applied == 1
        raise Killed
    assert _state(session_factory, message_id) == (MessageState.SENT, None, [])
    assert _waiting(session_factory) == 1

    assert _apply(session_factory) == 1
    assert _apply(session_factory) == 0
    assert _state(session_factory, message_id) == (MessageState.DELIVERED, "delivered", ["delivered"])


def test_a_callback_without_our_correlation_id_is_matched_by_message_sid(
    session_factory: sessionmaker[Session],
) -> None:
    message_id = _sent(session_factory, 7)
    _store(session_factory, "undelivered", 7, correlated=False)
    _apply(session_factory)
    state, _, events = _state(session_factory, message_id)
    assert (state, events) == (MessageState.UNDELIVERED, ["undelivered"])


def test_a_callback_for_an_unknown_message_is_dropped_and_changes_nothing(
    session_factory: sessionmaker[Session],
) -> None:
    message_id = _sent(session_factory, 1)
    _store(session_factory, "delivered", 2)
    assert _apply(session_factory) == 0
    assert _waiting(session_factory) == 0
    assert _state(session_factory, message_id) == (MessageState.SENT, None, [])


def test_callbacks_for_many_messages_are_applied_across_batches(
    session_factory: sessionmaker[Session],
) -> None:
    ids = [_sent(session_factory, n) for n in range(12)]
    for n in range(12):
        _store(session_factory, "sent", n)
        _store(session_factory, "delivered", n)

    applied = ingest.apply_pending(session_factory, lambda: NOW, run_for=60, limit=5)

    assert applied == 24
    assert {_state(session_factory, i)[0] for i in ids} == {MessageState.DELIVERED}
    assert _waiting(session_factory) == 0


def test_a_run_stops_when_its_time_is_up_and_leaves_the_rest_for_the_next(
    session_factory: sessionmaker[Session],
) -> None:
    for n in range(6):
        _sent(session_factory, n)
        _store(session_factory, "delivered", n)
    ticks = iter(range(100))

    applied = ingest.apply_pending(
        session_factory, lambda: NOW, run_for=1.5, monotonic=lambda: float(next(ticks)), limit=2
    )

    assert applied == 4
    assert _waiting(session_factory) == 2
