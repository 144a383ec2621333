"""Status callbacks, stored then applied: every event kept, status only forward, unknown ids
dropped after a grace, a crash before the apply commits loses nothing and repeats nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.channels.twilio import callbacks
from outreach.delivery import status
from outreach.models import (
    Message,
    MessageEvent,
    MessageState,
    PendingStatusEvent,
    Suppression,
    utcnow,
)
from outreach.outbox import transition
from tests.support.factories import STAMPED_AT, make_contact, make_message


def _sent_message(session: Session) -> Message:
    message = make_message(session, make_contact(session), kind="automated")
    transition(
        session,
        message.id,
        [MessageState.SCHEDULED],
        MessageState.SENT,
        provider_id="SM" + "a" * 32,
        to_address="+14155550100",
        correlation_id="c" * 32,
        now=STAMPED_AT,
    )
    session.expire_all()
    return message


def _callback(
    session: Session, status_text: str, error: str | None = None, correlation: str | None = None
) -> None:
    form = {"MessageSid": "SM" + "a" * 32, "MessageStatus": status_text}
    if error:
        form["ErrorCode"] = error
    _store_and_apply(session, callbacks.parse_status_callback(form, correlation))


def _store_and_apply(session: Session, event: callbacks.StatusEvent, now: datetime | None = None) -> None:
    at = now or utcnow()
    status.store(session, [(event, at)])
    status.apply_pending(session, at)
    session.expire_all()


def test_delivered_then_late_sent_stays_delivered(session: Session) -> None:
    message = _sent_message(session)
    _callback(session, "delivered")
    _callback(session, "sent")
    _callback(session, "queued")
    row = session.get(Message, message.id)
    assert row is not None and row.state == MessageState.DELIVERED
    events = session.scalars(select(MessageEvent.status).where(MessageEvent.message_id == message.id)).all()
    assert events == ["delivered", "sent", "queued"], "every callback is kept, in arrival order"


def test_duplicate_callbacks_are_harmless(session: Session) -> None:
    message = _sent_message(session)
    _callback(session, "delivered")
    _callback(session, "delivered")
    row = session.get(Message, message.id)
    assert row is not None and row.state == MessageState.DELIVERED


def test_callback_for_unknown_message_is_looked_at_again_then_dropped(session: Session) -> None:
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    received = utcnow()
    status.store(session, [(callbacks.parse_status_callback(form, None), received)])
    first = status.apply_pending(session, received)
    assert (first.applied, first.dropped) == (0, 0)
    again = received + status.UNMATCHED_RETRY
    assert status.apply_pending(session, again - timedelta(seconds=1)).seen == 0, "not before its retry"
    assert status.apply_pending(session, again).dropped == 0
    assert status.apply_pending(session, received + status.UNMATCHED_GRACE).dropped == 1
    assert session.scalars(select(MessageEvent)).all() == []
    assert session.scalars(select(PendingStatusEvent)).all() == []


def test_events_stored_in_one_batch_are_applied_in_arrival_order(session: Session) -> None:
    """Three callbacks for one message and one for another, applied by one batch."""
    message = _sent_message(session)
    other = make_message(session, make_contact(session, phone="+14155550123"), kind="automated")
    transition(
        session, other.id, [MessageState.SCHEDULED], MessageState.SENT, provider_id="SM" + "e" * 32,
        now=STAMPED_AT,
    )
    parse = callbacks.parse_status_callback
    now = utcnow()
    failed = {"MessageSid": "SM" + "e" * 32, "MessageStatus": "failed", "ErrorCode": "30007"}
    status.store(
        session,
        [
            (parse({"MessageSid": "SM" + "a" * 32, "MessageStatus": "sent"}, None), now),
            (parse(failed, None), now),
            (parse({"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered"}, None), now),
            (parse({"MessageSid": "SM" + "a" * 32, "MessageStatus": "undelivered"}, None), now),
        ],
    )
    assert status.apply_pending(session, now).applied == 4
    session.expire_all()
    mine, theirs = session.get(Message, message.id), session.get(Message, other.id)
    assert mine is not None and theirs is not None
    assert (mine.state, mine.provider_status) == (MessageState.DELIVERED, "delivered")
    assert theirs.state == MessageState.FAILED and theirs.error_code == "30007"
    assert "30007" in (theirs.state_reason or "")
    statuses = session.scalars(
        select(MessageEvent.status).where(MessageEvent.message_id == message.id).order_by(MessageEvent.id)
    ).all()
    assert statuses == ["sent", "delivered", "undelivered"]
    assert session.scalars(select(PendingStatusEvent)).all() == []


def test_callback_found_by_correlation_id_when_create_response_was_lost(session: Session) -> None:
    message = make_message(session, make_contact(session), kind="automated")
    transition(
        session, message.id, [MessageState.SCHEDULED], MessageState.UNKNOWN, correlation_id="d" * 32,
        now=STAMPED_AT,
    )
    _callback(session, "sent", correlation="d" * 32)
    row = session.get(Message, message.id)
    assert row is not None
    assert row.state == MessageState.SENT
    assert row.provider_id == "SM" + "a" * 32


def test_unknown_handset_suppresses_the_number(session: Session) -> None:
    message = _sent_message(session)
    _callback(session, "undelivered", error="30005")
    row = session.get(Message, message.id)
    assert row is not None and row.state == MessageState.UNDELIVERED and row.error_code == "30005"
    assert session.scalar(select(Suppression.address)) == "+14155550100"


def test_unreachable_handset_gets_exactly_one_later_resend(session: Session) -> None:
    message = _sent_message(session)
    _callback(session, "undelivered", error="30003")
    _callback(session, "undelivered", error="30003")
    resends = session.scalars(select(Message).where(Message.idempotency_key.like("%:resend"))).all()
    assert len(resends) == 1
    assert resends[0].state == MessageState.SCHEDULED
    assert resends[0].due_at > utcnow()
    assert message.id != resends[0].id


def test_callback_without_status_is_rejected_with_the_field_named() -> None:
    with pytest.raises(callbacks.InvalidCallback, match="MessageStatus"):
        callbacks.parse_status_callback({"MessageSid": "SM" + "1" * 32}, None)


def test_a_crash_before_the_apply_commits_loses_nothing_and_repeats_nothing(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        message_id = _sent_message(session).id
        now = utcnow()
        parse = callbacks.parse_status_callback
        status.store(
            session,
            [
                (parse({"MessageSid": "SM" + "a" * 32, "MessageStatus": "sent"}, None), now),
                (parse({"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered"}, None), now),
            ],
        )
    with pytest.raises(RuntimeError), session_factory.begin() as session:
        assert status.apply_pending(session, now).applied == 2
        raise RuntimeError("the worker died before its commit")
    with session_factory() as session:
        assert session.get(Message, message_id).state == MessageState.SENT  # type: ignore[union-attr]
        assert session.scalars(select(MessageEvent)).all() == []
    assert status.apply_for(session_factory, lambda: now, run_for=1.0).applied == 2
    assert status.apply_for(session_factory, lambda: now, run_for=1.0).seen == 0
    with session_factory() as session:
        assert session.get(Message, message_id).state == MessageState.DELIVERED  # type: ignore[union-attr]
        assert len(session.scalars(select(MessageEvent)).all()) == 2, "each event applied once"
