"""Replies "1" and "2" bound to the right visit, or handed to staff: both databases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import appointments
from outreach.appointments.replies import appointment_reply
from outreach.config import Settings
from outreach.models import Appointment, Contact, InboxItem, Message
from tests.support.appointments import CONFIRM, RESCHEDULE, inbound, la, mark_sent
from tests.support.factories import make_contact

NOW = la(2025, 6, 4, 12, 0)
VISIT = la(2025, 6, 10, 10, 0)
REQUEST_SENT = la(2025, 6, 9, 10, 0)
REPLY_AT = la(2025, 6, 9, 10, 5)


def _booked_with_request(session: Session, settings: Settings, phone: str | None = None) -> Appointment:
    contact = make_contact(session, phone=phone)
    change = appointments.book(
        session, settings, contact_id=contact.id, starts_at=VISIT, type="infusion", now=NOW
    )
    a = change.appointment
    mark_sent(session, f"appointment:{a.id}:reminder:booked:v1", NOW)
    mark_sent(session, f"appointment:{a.id}:reminder:confirm_request:v1", REQUEST_SENT)
    return a


def _tasks(session: Session) -> list[InboxItem]:
    return list(session.scalars(select(InboxItem).where(InboxItem.kind == "task")))


def test_reply_1_confirms_the_visit_and_acknowledges(session: Session, settings: Settings) -> None:
    a = _booked_with_request(session, settings)
    contact = session.get(Contact, a.contact_id)
    assert contact is not None and contact.phone
    reply = inbound(session, contact.phone, "1", REPLY_AT)
    assert appointment_reply(session, settings, reply, [contact], CONFIRM, REPLY_AT) is True
    session.refresh(a)
    assert a.status == "confirmed" and a.confirmed_at == REPLY_AT
    ack = session.scalars(
        select(Message).where(Message.idempotency_key == f"inbound:{reply.id}:appointment_ack")
    ).one()
    assert ack.template == "sms/appointments/confirmed_ack" and ack.kind == "system"
    assert ack.to_override == contact.phone
    # The same inbound processed twice (a retried task) changes nothing more.
    assert appointment_reply(session, settings, reply, [contact], CONFIRM, REPLY_AT) is True
    assert (
        len(
            session.scalars(select(Message).where(Message.template == "sms/appointments/confirmed_ack")).all()
        )
        == 1
    )


def test_reply_2_requests_a_reschedule_and_opens_a_staff_task(session: Session, settings: Settings) -> None:
    a = _booked_with_request(session, settings)
    contact = session.get(Contact, a.contact_id)
    assert contact is not None and contact.phone
    reply = inbound(session, contact.phone, "2", REPLY_AT)
    assert appointment_reply(session, settings, reply, [contact], RESCHEDULE, REPLY_AT) is True
    session.refresh(a)
    assert a.status == "reschedule_requested" and a.reschedule_requested_at == REPLY_AT
    [task] = _tasks(session)
    assert task.classification == "reschedule" and task.contact_id == contact.id
    assert task.candidates[0]["appointment_id"] == a.id
    assert appointment_reply(session, settings, reply, [contact], RESCHEDULE, REPLY_AT) is True
    assert len(_tasks(session)) == 1


def test_a_phone_shared_by_two_patients_goes_to_staff_with_both_visits(
    session: Session, settings: Settings
) -> None:
    shared = "+14155550199"
    one = _booked_with_request(session, settings, phone=shared)
    two = _booked_with_request(session, settings, phone=shared)
    contacts = [session.get(Contact, one.contact_id), session.get(Contact, two.contact_id)]
    reply = inbound(session, shared, "1", REPLY_AT)
    assert appointment_reply(session, settings, reply, contacts, CONFIRM, REPLY_AT) is True  # type: ignore[arg-type]
    [task] = _tasks(session)
    assert {c["appointment_id"] for c in task.candidates} == {one.id, two.id}
    session.refresh(one)
    session.refresh(two)
    assert one.status == two.status == "booked", "never guessed"


def test_the_most_recent_request_wins_but_two_close_together_are_ambiguous(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    first = appointments.book(
        session, settings, contact_id=contact.id, starts_at=VISIT, type="follow-up", now=NOW
    )
    second = appointments.book(
        session,
        settings,
        contact_id=contact.id,
        starts_at=VISIT + timedelta(days=3),
        type="consultation",
        now=NOW,
    )
    mark_sent(session, f"appointment:{first.appointment.id}:reminder:booked:v1", NOW)
    mark_sent(session, f"appointment:{second.appointment.id}:reminder:booked:v1", NOW + timedelta(minutes=1))
    reply = inbound(session, contact.phone or "", "1", NOW + timedelta(minutes=5))
    assert appointment_reply(session, settings, reply, [contact], CONFIRM, NOW + timedelta(minutes=5)) is True
    [task] = _tasks(session)
    assert len(task.candidates) == 2
    # A day later the day-before request for the first visit goes out alone: "1" now binds to it.
    mark_sent(session, f"appointment:{first.appointment.id}:reminder:confirm_request:v1", REQUEST_SENT)
    later = inbound(session, contact.phone or "", "1", REPLY_AT)
    assert appointment_reply(session, settings, later, [contact], CONFIRM, REPLY_AT) is True
    session.refresh(first.appointment)
    session.refresh(second.appointment)
    assert first.appointment.status == "confirmed" and second.appointment.status == "booked"


def test_a_reply_about_a_visit_already_past_goes_to_staff(session: Session, settings: Settings) -> None:
    a = _booked_with_request(session, settings)
    contact = session.get(Contact, a.contact_id)
    assert contact is not None
    too_late = VISIT + timedelta(hours=2)
    reply = inbound(session, contact.phone or "", "1", too_late)
    assert appointment_reply(session, settings, reply, [contact], CONFIRM, too_late) is True
    [task] = _tasks(session)
    assert "already started" in task.text
    session.refresh(a)
    assert a.status == "booked"


def test_a_request_for_the_old_time_does_not_confirm_the_new_one(
    session: Session, settings: Settings
) -> None:
    a = _booked_with_request(session, settings)
    appointments.reschedule(
        session, settings, a.id, VISIT + timedelta(days=1), notify=False, now=REQUEST_SENT
    )
    contact = session.get(Contact, a.contact_id)
    assert contact is not None
    reply = inbound(session, contact.phone or "", "1", REPLY_AT)
    assert appointment_reply(session, settings, reply, [contact], CONFIRM, REPLY_AT) is False
    session.refresh(a)
    assert a.status == "booked" and _tasks(session) == []


def test_no_open_request_leaves_the_reply_to_the_inbox(session: Session, settings: Settings) -> None:
    contact = make_contact(session)
    appointments.book(session, settings, contact_id=contact.id, starts_at=VISIT, type="infusion", now=NOW)
    reply = inbound(session, contact.phone or "", "1", REPLY_AT)
    assert appointment_reply(session, settings, reply, [contact], CONFIRM, REPLY_AT) is False
    assert appointment_reply(session, settings, reply, [], CONFIRM, REPLY_AT) is False
