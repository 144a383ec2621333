"""Care first: a visit's reminders are never dropped or moved for education or marketing, and
one message both books and asks to confirm a visit booked the day before. Both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach import appointments
from outreach.appointments.replies import appointment_reply
from outreach.campaigns import sync
from outreach.campaigns.enroll import enroll
from outreach.config import Settings
from outreach.delivery.send import Services, send_message
from outreach.models import Appointment, Contact, Message, MessageState
from outreach.outbox import transition
from tests.support.appointments import CONFIRM, LA, inbound, la, messages_of
from tests.support.factories import STAMPED_AT, make_contact, make_message
from tests.support.fakes import FakeProvider, fake_services

MON_0830 = la(2026, 3, 2, 8, 30)  # a Monday morning in Los Angeles
EDUCATION = "ketamine-education"  # first email: day 0 at 10:00, campaign window 09:00-19:00


def _services(
    settings: Settings, factory: sessionmaker[Session], now: datetime
) -> tuple[Services, FakeProvider]:
    provider = FakeProvider()
    return fake_services(settings, factory, provider, now), provider


def _enrolled(session: Session, settings: Settings, now: datetime) -> Contact:
    sync.sync(session, settings, now)
    contact = make_contact(session)
    report = enroll(session, settings, EDUCATION, [contact.id], now=now)
    assert [o.outcome for o in report.outcomes] == ["enrolled"]
    return contact


def _book(session: Session, settings: Settings, contact: Contact, starts: datetime, kind: str) -> Appointment:
    return appointments.book(
        session, settings, contact_id=contact.id, starts_at=starts, type=kind, now=MON_0830
    ).appointment


def _education(session: Session, contact_id: int) -> list[Message]:
    return list(
        session.scalars(
            select(Message)
            .where(Message.contact_id == contact_id, Message.category == "education")
            .order_by(Message.due_at)
        )
    )


def _local(instant: datetime) -> str:
    return instant.astimezone(LA).strftime("%a %H:%M")


def test_booked_the_day_before_one_message_books_and_asks_to_confirm_and_the_education_email_still_goes(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        contact = _enrolled(session, settings, MON_0830)
        visit = _book(session, settings, contact, la(2026, 3, 3, 14, 0), "follow-up")
        visit_id, contact_id, phone = visit.id, contact.id, contact.phone
        rows = messages_of(session, visit_id)
        request = rows[f"appointment:{visit_id}:reminder:confirm_request:v1"]
        assert request.state == MessageState.SKIPPED
        assert (
            request.state_reason
            == "combined: the booking message that day already asks to confirm this visit"
        )
        booked = rows[f"appointment:{visit_id}:reminder:booked:v1"]
        assert booked.state == MessageState.SCHEDULED
        email = _education(session, contact_id)[0]
        assert email.state == MessageState.SCHEDULED and _local(email.due_at) == "Mon 10:00"
        transition(session, booked.id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
        booked_id = booked.id

    services, provider = _services(settings, session_factory, MON_0830)
    assert send_message(services, booked_id) == MessageState.SENT
    [sms] = provider.sent
    assert "you're booked for Tue, Mar 3 at 2:00 PM. Reply 1 to confirm, 2 to reschedule." in sms.body

    with session_factory.begin() as session:
        assert phone is not None
        patient = session.get(Contact, contact_id)
        reply = inbound(session, phone, "1", MON_0830 + timedelta(minutes=5))
        assert appointment_reply(session, settings, reply, [patient], CONFIRM, reply.received_at) is True  # type: ignore[list-item]
    with session_factory() as session:
        assert appointments.get(session, visit_id).status == "confirmed"


def test_when_the_daily_limit_binds_the_education_email_moves_to_the_next_day_and_the_reminders_stay(
    session: Session, settings: Settings
) -> None:
    contact = _enrolled(session, settings, MON_0830)
    # Thursday's infusion: the booking text now and the preparation email at 10:00 fill Monday.
    visit = _book(session, settings, contact, la(2026, 3, 5, 14, 0), "infusion")
    rows = messages_of(session, visit.id)
    by_step = {m.reminder_key: m for m in rows.values()}
    assert {k: m.state for k, m in by_step.items()} == {
        "booked": "scheduled",
        "prep": "scheduled",
        "confirm_request": "scheduled",
        "day_of": "scheduled",
    }
    assert _local(by_step["prep"].due_at) == "Mon 10:00"
    first = _education(session, contact.id)[0]
    session.refresh(first)
    assert first.state == MessageState.SCHEDULED
    assert _local(first.due_at) == "Tue 09:00"
    assert (first.state_reason or "").startswith("care first:")


def test_enrolling_after_a_booking_keeps_education_off_the_day_the_reminders_fill(
    session: Session, settings: Settings
) -> None:
    sync.sync(session, settings, MON_0830)
    contact = make_contact(session)
    _book(session, settings, contact, la(2026, 3, 5, 14, 0), "infusion")
    enroll(session, settings, EDUCATION, [contact.id], now=MON_0830)
    # Monday is full (booking text, preparation email): the first email goes Tuesday; Thursday
    # has one reminder (the on-the-day text), so the second email keeps its time there.
    assert [_local(m.due_at) for m in _education(session, contact.id)][:2] == ["Tue 09:00", "Thu 10:00"]


# ---------------------------------------------------------------- at send time

NOON = la(2026, 1, 15, 12, 0)  # Thursday noon in Los Angeles


def _sent(session: Session, contact: Contact, category: str, at: datetime) -> None:
    make_message(session, contact, kind="automated", category=category, state="sent", sent_at=at, due_at=at)


def _queued(session: Session, contact: Contact, category: str) -> int:
    message = make_message(session, contact, kind="automated", category=category, due_at=NOON)
    transition(session, message.id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
    return message.id


def _after_send(settings: Settings, factory: sessionmaker[Session], message_id: int) -> tuple[Message, int]:
    services, provider = _services(settings, factory, NOON)
    send_message(services, message_id)
    with factory() as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message, len(provider.sent)


@pytest.mark.parametrize(
    ("earlier", "state", "reason"),
    [
        (
            ("care", "care"),
            MessageState.SKIPPED,
            "combined: at most 2 automated messages per day to one patient",
        ),
        (("education", "care"), MessageState.SENT, None),
    ],
    ids=["a third reminder is skipped", "an education email sent earlier never stops a reminder"],
)
def test_the_send_time_daily_limit_counts_only_care_against_a_reminder(
    settings: Settings,
    session_factory: sessionmaker[Session],
    earlier: tuple[str, str],
    state: str,
    reason: str | None,
) -> None:
    with session_factory.begin() as session:
        contact = make_contact(session)
        for hours, category in zip((3, 1), earlier, strict=True):
            _sent(session, contact, category, NOON - timedelta(hours=hours))
        reminder = _queued(session, contact, "care")
    message, sent = _after_send(settings, session_factory, reminder)
    assert (message.state, message.state_reason, sent) == (state, reason, int(state == MessageState.SENT))


def test_an_education_message_waits_for_tomorrow_when_the_days_reminders_fill_the_limit(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        contact = make_contact(session)
        _sent(session, contact, "care", NOON - timedelta(hours=2))
        # The on-the-day reminder still to go this afternoon counts before the education text.
        make_message(session, contact, kind="automated", category="care", due_at=NOON + timedelta(hours=4))
        education = _queued(session, contact, "education")
    message, sent = _after_send(settings, session_factory, education)
    assert sent == 0
    assert message.state == MessageState.SCHEDULED
    assert message.due_at == datetime(2026, 1, 16, 16, 0, tzinfo=UTC)  # Friday 08:00 in Los Angeles
    assert (message.state_reason or "").startswith("care first:")
