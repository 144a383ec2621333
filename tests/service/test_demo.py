"""The demo at any hour: what the banner says is held, and the conversation it plays once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach import demo
from outreach.config import Settings
from outreach.db import transaction
from outreach.models import InboxItem, Message
from outreach.timefmt import local
from tests.support.replies import form, receive

NIGHT = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)  # Wed 03:00 Pacific
NOON = datetime(2026, 6, 10, 19, 0, tzinfo=UTC)


def _seed(factory: sessionmaker[Session], settings: Settings, now: datetime) -> None:
    with transaction(factory) as session:
        demo.seed(session, settings, now)


def test_at_3am_the_banner_says_the_next_message_goes_at_8_because_of_quiet_hours(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    _seed(session_factory, settings, NIGHT)
    note = demo.held_note(session, settings, NIGHT)
    assert note.startswith("Automated messages are held: next message 08:00 Pacific — quiet hours")
    assert "(Wed 10 Jun 2026, 08:00 Pacific)" in note


def test_inside_the_window_the_banner_names_the_next_scheduled_message(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    _seed(session_factory, settings, NOON)
    pending = select(Message.due_at).where(Message.state == "scheduled", Message.due_at > NOON)
    upcoming = session.scalars(pending.order_by(Message.due_at)).first()
    assert upcoming is not None
    assert demo.held_note(session, settings, NOON) == (
        f"Inside the sending window: next scheduled message {local(upcoming, settings.clinic_zone)}."
    )


def test_the_demo_conversation_plays_once_with_a_staff_reply_inside_the_window(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    _seed(session_factory, settings, NIGHT)
    texts: list[tuple[str, str]] = []

    def text_the_clinic(number: str, body: str) -> None:
        # What the sandbox's fake phone and the worker do: the webhook, then the task.
        texts.append((number, body))
        receive(session_factory, settings, form(body, number), NIGHT)

    assert demo.converse(session_factory, settings, text_the_clinic, lambda: NIGHT, lambda _s: None)
    assert [number for number, _ in texts] == [demo.DEMO_QUESTION[0], demo.DEMO_CRISIS[0]]
    session.expire_all()
    staff = session.scalars(select(Message).where(Message.kind == "conversational")).one()
    assert staff.body_override == demo.DEMO_STAFF_REPLY and staff.due_at == NIGHT
    assert session.scalars(select(InboxItem).where(InboxItem.kind == "crisis")).one().urgent
    session.commit()

    later = NIGHT + timedelta(hours=1)
    assert not demo.converse(session_factory, settings, text_the_clinic, lambda: later, lambda _s: None)
    assert len(texts) == 2
