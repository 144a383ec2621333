"""Status callbacks: every event kept, status only forward, unknown ids ignored."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.channels.twilio import callbacks
from outreach.delivery import status
from outreach.models import Message, MessageEvent, MessageState, Suppression, utcnow
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
    status.handle(session, callbacks.parse_status_callback(form, correlation), utcnow())
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


def test_callback_for_unknown_message_changes_nothing(session: Session) -> None:
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    assert status.handle(session, callbacks.parse_status_callback(form, None), utcnow()) is None
    assert session.scalars(select(MessageEvent)).all() == []


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
