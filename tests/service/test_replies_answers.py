"""What a patient hears back: one answer per keyword, and an answer to what no rule can act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings, load_settings
from outreach.content.rendering import render_message
from outreach.models import InboxItem, Message
from tests.support.replies import add_contact, form, receive

# 03:00 in Walnut Creek (PDT): far outside any sending window.
NIGHT = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)
ACKNOWLEDGEMENT = "sms/system/acknowledgement"


def _settings(settings: Settings, *, twilio_handles_opt_out: bool) -> Settings:
    return load_settings(
        database_url=settings.database_url,
        templates_dir=settings.templates_dir,
        twilio_handles_opt_out=twilio_handles_opt_out,
        clinic_display_name="Lakeside Wellness",
        conversational_window_hours=4,
    )


@pytest.fixture
def twilio_answers(settings: Settings) -> Settings:
    return _settings(settings, twilio_handles_opt_out=True)


@pytest.fixture
def app_answers(settings: Settings) -> Settings:
    return _settings(settings, twilio_handles_opt_out=False)


def _sent_to_patient(session: Session) -> list[Message]:
    session.expire_all()
    rows = list(session.scalars(select(Message).where(Message.contact_id.is_not(None)).order_by(Message.id)))
    session.commit()  # end the read, so the next webhook can write (SQLite)
    return rows


def _acknowledgements(session: Session) -> list[Message]:
    return [m for m in _sent_to_patient(session) if m.template == ACKNOWLEDGEMENT]


@pytest.mark.parametrize("keyword", ["HELP", "info", "STOP", "START"])
def test_keywords_twilio_answers_get_no_second_answer_from_the_app(
    session: Session, session_factory: sessionmaker[Session], twilio_answers: Settings, keyword: str
) -> None:
    add_contact(session)
    if keyword == "START":
        receive(session_factory, twilio_answers, form("STOP"), NIGHT - timedelta(hours=1))
    receive(session_factory, twilio_answers, form(keyword), NIGHT)
    assert _sent_to_patient(session) == []


def test_free_text_at_night_gets_the_office_hours_answer_and_goes_to_staff(
    session: Session, session_factory: sessionmaker[Session], app_answers: Settings
) -> None:
    contact = add_contact(session)
    receive(session_factory, app_answers, form("Is there parking near the clinic?"), NIGHT)

    [answer] = _acknowledgements(session)
    assert (answer.kind, answer.contact_id, answer.to_override, answer.due_at) == (
        "system", contact.id, "+15105550101", NIGHT
    )
    text = render_message(session, app_answers, answer).text
    assert text == (
        "Lakeside Wellness: Thanks - a team member will get back to you during office hours. "
        "If this is an emergency call 911 or 988."
    )
    [item] = session.scalars(select(InboxItem)).all()
    assert (item.kind, item.state, item.text) == ("message", "unread", "Is there parking near the clinic?")


def test_a_one_with_nothing_to_confirm_is_answered_and_filed_for_staff(
    session: Session, session_factory: sessionmaker[Session], twilio_answers: Settings
) -> None:
    add_contact(session)
    actions = receive(session_factory, twilio_answers, form("1"), NIGHT)
    assert "acknowledgement" in actions
    assert len(_acknowledgements(session)) == 1
    [item] = session.scalars(select(InboxItem)).all()
    assert item.classification == "confirm"


def test_the_answer_goes_once_per_conversation_window(
    session: Session, session_factory: sessionmaker[Session], app_answers: Settings
) -> None:
    add_contact(session)
    receive(session_factory, app_answers, form("hello"), NIGHT)
    receive(session_factory, app_answers, form("are you there?"), NIGHT + timedelta(minutes=5))
    receive(session_factory, app_answers, form("ok thanks"), NIGHT + timedelta(hours=3, minutes=59))
    assert len(_acknowledgements(session)) == 1

    receive(session_factory, app_answers, form("one more question"), NIGHT + timedelta(hours=4, minutes=1))
    assert [m.due_at for m in _acknowledgements(session)] == [NIGHT, NIGHT + timedelta(hours=4, minutes=1)]


def test_no_answer_to_a_patient_who_said_stop(
    session: Session, session_factory: sessionmaker[Session], app_answers: Settings
) -> None:
    add_contact(session)
    receive(session_factory, app_answers, form("STOP"), NIGHT - timedelta(hours=1))
    actions = receive(session_factory, app_answers, form("why did I get that?"), NIGHT)

    assert "acknowledgement_not_sent:opted_out" in actions
    assert _acknowledgements(session) == []
    assert any(i.text == "why did I get that?" for i in session.scalars(select(InboxItem)))
