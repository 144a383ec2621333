"""Retention on both databases: after the configured days, texts are gone and the record of what
happened stays; nothing that may still be sent is touched; a second run changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach import audit
from outreach.models import (
    AuditEvent,
    ConsentEvent,
    Contact,
    InboundMessage,
    InboxItem,
    InboxState,
    Message,
    MessageAttempt,
    MessageEvent,
    MessageState,
)
from outreach.models.accounts import LoginFailure, User, WebSession
from outreach.ops.retention import Cleared, Forgotten, clear_old_content, forget_staff_traces
from outreach.outbox import transition
from tests.support.factories import make_contact, make_message

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=200)
RECENT = NOW - timedelta(days=30)
STAFF = audit.Actor(audit.ActorKind.USER, "nurse@clinic.example.org")


def _message(session: Session, contact: Contact, state: MessageState, last_change: datetime) -> int:
    message = make_message(
        session,
        contact,
        body="Rosa, your visit is on Friday at 10:00.",
        template="sms/reminder",
        context={"appointment_at": "2026-02-13T10:00"},
    )
    if state != MessageState.SCHEDULED:
        transition(
            session,
            message.id,
            [MessageState.SCHEDULED],
            state,
            to_address="+14155550123",
            body="Rosa, your visit is on Friday at 10:00.",
            subject="Your visit",
            provider_id=f"SM{message.id:032d}",
            now=NOW,
        )
    session.add(
        MessageEvent(message_id=message.id, status="delivered", payload={"MessageStatus": "delivered"})
    )
    session.add(MessageAttempt(message_id=message.id, number=1, outcome="accepted"))
    session.flush()
    session.execute(update(Message).where(Message.id == message.id).values(updated_at=last_change))
    return message.id


def _reply(body: str, at: datetime) -> InboundMessage:
    return InboundMessage(
        provider_sid=f"SM{uuid.uuid4().hex}",
        from_address="+14155550123",
        to_address="+15005550006",
        body=body,
        received_at=at,
        processed_at=at,
    )


def _load(factory: sessionmaker[Session]) -> dict[str, Any]:
    with factory.begin() as session:
        contact = make_contact(session)
        ids = {
            "old_delivered": _message(session, contact, MessageState.DELIVERED, OLD),
            "old_cancelled": _message(session, contact, MessageState.CANCELLED, OLD),
            "recent_delivered": _message(session, contact, MessageState.DELIVERED, RECENT),
            **{
                f"old_{state}": _message(session, contact, state, OLD)
                for state in (
                    MessageState.SCHEDULED,
                    MessageState.QUEUED,
                    MessageState.SENDING,
                    MessageState.UNKNOWN,
                )
            },
        }
        old_reply, new_reply = _reply("I can't make Friday", OLD), _reply("See you then", RECENT)
        session.add_all([old_reply, new_reply])
        session.flush()
        handled = InboxItem(
            contact_id=contact.id,
            inbound_message_id=old_reply.id,
            kind="message",
            text="I can't make Friday",
            state=InboxState.HANDLED,
            created_at=OLD,
            handled_at=OLD,
        )
        still_open = InboxItem(contact_id=contact.id, kind="message", text="Call me back", created_at=OLD)
        session.add_all([handled, still_open])
        audit.record(session, STAFF, "contact.view", OLD, subject_type="contact", subject_id=contact.id)
        session.flush()
        ids.update(
            old_reply=old_reply.id,
            new_reply=new_reply.id,
            handled=handled.id,
            open=still_open.id,
            contact=contact.id,
        )
        return ids


def _counts(session: Session) -> tuple[int, ...]:
    return tuple(
        session.scalar(select(func.count()).select_from(table)) or 0
        for table in (
            Message,
            MessageEvent,
            MessageAttempt,
            ConsentEvent,
            AuditEvent,
            InboundMessage,
            InboxItem,
        )
    )


def test_old_texts_are_cleared_and_the_record_of_what_happened_is_kept(
    session_factory: sessionmaker[Session],
) -> None:
    ids = _load(session_factory)
    with session_factory() as session:
        before = _counts(session)

    cleared = clear_old_content(session_factory, NOW, days=180)

    assert cleared == Cleared(messages=2, inbound=1, inbox_items=1)
    with session_factory() as session:
        assert _counts(session) == before, "no row deleted: events, attempts, consent and audit whole"
        for key in ("old_delivered", "old_cancelled"):
            message = session.get_one(Message, ids[key])
            assert (message.body, message.subject, message.body_override, message.context) == (
                None,
                None,
                None,
                {},
            )
            # Who, when, which template, channel and outcome stay, and so does every event.
            assert message.to_address == "+14155550123"
            assert message.template == "sms/reminder" and message.channel == "sms"
            assert message.provider_id and message.state in ("delivered", "cancelled")
            assert message.updated_at.replace(tzinfo=UTC) == OLD
            assert [e.status for e in message.events] == ["delivered"]
        assert session.get_one(InboundMessage, ids["old_reply"]).body == ""
        assert session.get_one(InboundMessage, ids["old_reply"]).from_address == "+14155550123"
        assert session.get_one(InboxItem, ids["handled"]).text == ""


def test_recent_messages_and_anything_that_may_still_be_sent_keep_their_text(
    session_factory: sessionmaker[Session],
) -> None:
    ids = _load(session_factory)

    clear_old_content(session_factory, NOW, days=180)

    with session_factory() as session:
        for key in ("recent_delivered", "old_scheduled", "old_queued", "old_sending", "old_unknown"):
            message = session.get_one(Message, ids[key])
            assert message.body_override == "Rosa, your visit is on Friday at 10:00.", key
            assert message.context == {"appointment_at": "2026-02-13T10:00"}, key
        assert session.get_one(InboundMessage, ids["new_reply"]).body == "See you then"
        assert session.get_one(InboxItem, ids["open"]).text == "Call me back", (
            "an open item is still to be read"
        )


def test_a_second_run_and_small_batches_change_nothing_more(session_factory: sessionmaker[Session]) -> None:
    _load(session_factory)

    first = clear_old_content(session_factory, NOW, days=180, batch=1)
    second = clear_old_content(session_factory, NOW, days=180, batch=1)

    assert first == Cleared(messages=2, inbound=1, inbox_items=1)
    assert second == Cleared()


def test_zero_days_keeps_everything(session_factory: sessionmaker[Session]) -> None:
    ids = _load(session_factory)

    assert clear_old_content(session_factory, NOW, days=0) == Cleared()
    with session_factory() as session:
        assert session.get_one(Message, ids["old_delivered"]).body is not None


def test_old_failed_sign_ins_and_ended_staff_sessions_are_deleted(
    session_factory: sessionmaker[Session],
) -> None:
    idle = timedelta(minutes=15)
    with session_factory.begin() as session:
        user = User(email="desk@clinic.example.org", role="staff", password_hash="x")
        session.add(user)
        session.flush()
        for days in (40, 29):
            session.add(LoginFailure(at=NOW - timedelta(days=days), email=user.email, address="192.0.2.7"))

        def browser(name: str, last_seen: datetime, revoked: datetime | None = None) -> None:
            session.add(
                WebSession(
                    token_hash=name.ljust(64, "0"), user_id=user.id, created_at=last_seen,
                    last_seen_at=last_seen, address=None, csrf_token="c", revoked_at=revoked,
                )
            )

        browser("signedoutlongago", NOW - timedelta(days=3), revoked=NOW - timedelta(days=3))
        browser("idlelongago", NOW - timedelta(days=2))
        browser("signedoutjustnow", NOW - timedelta(hours=1), revoked=NOW - timedelta(hours=1))
        browser("inuse", NOW - timedelta(minutes=5))

    assert forget_staff_traces(session_factory, NOW, idle) == Forgotten(login_failures=1, web_sessions=2)
    with session_factory() as session:
        assert [f.at for f in session.scalars(select(LoginFailure))] == [NOW - timedelta(days=29)]
        left = sorted(w.token_hash.rstrip("0") for w in session.scalars(select(WebSession)))
        assert left == ["inuse", "signedoutjustnow"]
    assert forget_staff_traces(session_factory, NOW, idle) == Forgotten(), "a second run finds nothing"
