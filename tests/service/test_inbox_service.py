"""The staff inbox service: list, show with the conversation, reply, handle, assign, clear a pause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings
from outreach.db import transaction
from outreach.delivery.conversation import conversational_window_open
from outreach.errors import NotFound
from outreach.models import Contact, InboxItem, Message
from outreach.replies import inbox
from tests.support.replies import add_contact, form, receive

NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wrote_minutes_ago", "hours", "expected"),
    [
        (None, 4, False),  # never wrote: automated window only
        (0, 4, True),
        (239, 4, True),
        (240, 4, True),  # the boundary is inclusive
        (241, 4, False),
        (30, 0.5, True),
        (31, 0.5, False),
        (-5, 4, False),  # a clock skewed into the future never opens the window
    ],
)
def test_conversational_window_is_open_for_hours_after_the_patients_own_message(
    wrote_minutes_ago: int | None, hours: float, expected: bool
) -> None:
    last = None if wrote_minutes_ago is None else NOW - timedelta(minutes=wrote_minutes_ago)
    assert conversational_window_open(last, NOW, hours) is expected


def _item_id(session: Session) -> int:
    session.expire_all()
    item_id = session.scalars(select(InboxItem.id).order_by(InboxItem.id.desc())).first()
    session.commit()
    assert item_id is not None
    return item_id


def test_list_puts_urgent_items_first_and_hides_handled_ones(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session, phone="+15105550101", first_name="Ana")
    add_contact(session, phone="+15105550102", first_name="Ben")
    receive(session_factory, settings, form("parking?", "+15105550101"), NOW)
    receive(session_factory, settings, form("I want to die", "+15105550102"), NOW - timedelta(hours=1))
    receive(session_factory, settings, form("hello", "+14155550100"), NOW + timedelta(minutes=1))

    with transaction(session_factory) as tx:
        items = inbox.list_items(tx)
        first, *rest = items
        assert (first.kind, first.urgent, first.contact_name) == ("crisis", True, "Ben Test")
        assert [i.text for i in rest] == ["hello", "parking?"]
        inbox.mark_handled(tx, first.id, "nurse", NOW)
    with transaction(session_factory) as tx:
        assert [i.kind for i in inbox.list_items(tx)] == ["message", "message"]
        assert [i.kind for i in inbox.list_items(tx, state="handled")] == ["crisis"]
        assert len(inbox.list_items(tx, state="all")) == 3


def test_show_gives_the_conversation_in_time_order_and_marks_it_read(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session)
    receive(session_factory, settings, form("hi, quick question"), NOW)
    item_id = _item_id(session)
    with transaction(session_factory) as tx:
        inbox.reply(tx, settings, item_id, "Sure, go ahead", "nurse", NOW + timedelta(minutes=2))
    receive(session_factory, settings, form("where do I park?"), NOW + timedelta(minutes=5))

    with transaction(session_factory) as tx:
        detail = inbox.show_item(tx, item_id)
    # The automatic office-hours answer (not yet sent, so shown by its template) is part of it.
    assert [(e.direction, e.text) for e in detail.conversation] == [
        ("in", "hi, quick question"), ("out", "[sms/system/acknowledgement]"),
        ("out", "Sure, go ahead"), ("in", "where do I park?"),
    ]
    assert detail.phone == "+15105550101" and not detail.sms_opted_out
    with transaction(session_factory) as tx:
        assert inbox.show_item(tx, item_id, mark_read=False).item.state == "read"


def test_a_staff_reply_is_a_conversational_outbox_row_for_that_contact(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session)
    receive(session_factory, settings, form("can I bring my sister?"), NOW)
    item_id = _item_id(session)
    with transaction(session_factory) as tx:
        queued = inbox.reply(tx, settings, item_id, "Yes, of course.", "nurse", NOW + timedelta(hours=1))

    assert queued.goes_out_any_hour
    session.expire_all()
    row = session.get_one(Message, queued.message_id)
    assert (row.kind, row.channel, row.category) == ("conversational", "sms", "care")
    assert row.contact_id == contact.id
    assert row.body_override == "Yes, of course." and row.context["staff"] == "nurse"
    assert row.due_at == NOW + timedelta(hours=1)


def test_a_reply_long_after_the_patients_message_waits_for_the_window(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session)
    receive(session_factory, settings, form("thanks"), NOW)
    item_id = _item_id(session)
    with transaction(session_factory) as tx:
        queued = inbox.reply(tx, settings, item_id, "You're welcome", "nurse", NOW + timedelta(hours=5))
    assert not queued.goes_out_any_hour


def test_a_reply_to_an_opted_out_number_is_refused(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session)
    receive(session_factory, settings, form("you people never call back"), NOW)
    item_id = _item_id(session)
    receive(session_factory, settings, form("STOP"), NOW + timedelta(minutes=1))
    with transaction(session_factory) as tx, pytest.raises(inbox.ReplyRefused, match="opted out"):
        inbox.reply(tx, settings, item_id, "Sorry about that", "nurse", NOW + timedelta(minutes=2))
    session.expire_all()
    assert session.scalars(select(Message).where(Message.kind == "conversational")).all() == []


def test_a_reply_to_a_shared_phone_needs_a_chosen_candidate(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session, phone="+15105550123", first_name="Ana")
    ben_id = add_contact(session, phone="+15105550123", first_name="Ben").id
    stranger_id = add_contact(session, phone="+15105550999", first_name="Cy").id
    receive(session_factory, settings, form("running late", "+15105550123"), NOW)
    item_id = _item_id(session)

    with transaction(session_factory) as tx, pytest.raises(inbox.ReplyRefused, match="choose one"):
        inbox.reply(tx, settings, item_id, "No problem", "nurse", NOW)
    with transaction(session_factory) as tx, pytest.raises(inbox.ReplyRefused, match="not the sender"):
        inbox.reply(tx, settings, item_id, "No problem", "nurse", NOW, contact_id=stranger_id)
    with transaction(session_factory) as tx:
        queued = inbox.reply(tx, settings, item_id, "No problem", "nurse", NOW, contact_id=ben_id)
    session.expire_all()
    assert session.get_one(Message, queued.message_id).contact_id == ben_id


def test_a_reply_to_an_unknown_sender_is_refused_with_what_to_do(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    receive(session_factory, settings, form("who is this?", "+14155550100"), NOW)
    item_id = _item_id(session)
    with transaction(session_factory) as tx, pytest.raises(inbox.ReplyRefused, match="add them as a contact"):
        inbox.reply(tx, settings, item_id, "Hi", "nurse", NOW)


def test_assign_and_handle_record_who(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session)
    receive(session_factory, settings, form("question"), NOW)
    item_id = _item_id(session)
    with transaction(session_factory) as tx:
        assert inbox.assign(tx, item_id, "Dr. Lee").assigned_to == "Dr. Lee"
        handled = inbox.mark_handled(tx, item_id, "Dr. Lee", NOW)
    assert (handled.state, handled.handled_by, handled.handled_at) == ("handled", "Dr. Lee", NOW)
    with transaction(session_factory) as tx:
        assert [i.id for i in inbox.list_items(tx, state="all", assigned_to="Dr. Lee")] == [item_id]


def test_staff_clear_a_crisis_pause(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session)
    receive(session_factory, settings, form("better off dead"), NOW)
    with transaction(session_factory) as tx:
        assert inbox.clear_crisis_pause(tx, contact.id, "Dr. Lee", NOW + timedelta(hours=1))
    with transaction(session_factory) as tx:
        assert not inbox.clear_crisis_pause(tx, contact.id, "Dr. Lee", NOW + timedelta(hours=1))
    session.expire_all()
    refreshed = session.get_one(Contact, contact.id)
    assert refreshed.automation_paused_at is None and refreshed.automation_paused_reason is None


def test_unknown_ids_are_clear_errors(session_factory: sessionmaker[Session], settings: Settings) -> None:
    with transaction(session_factory) as tx:
        with pytest.raises(NotFound, match="inbox item 404"):
            inbox.show_item(tx, 404)
        with pytest.raises(NotFound, match="contact 404"):
            inbox.clear_crisis_pause(tx, 404, "nurse", NOW)
