"""End to end: book a visit, the confirmation request reaches the fake phone, the patient
replies 1 (confirmed) or 2 (reschedule requested, staff task)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from outreach import appointments
from outreach.models import Appointment, AppointmentStatus, InboxItem, utcnow
from tests.support.e2e import System, daytime_zone, running_system
from tests.support.factories import make_contact
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(pg_url: str, tmp_path: Path) -> Iterator[System]:
    with running_system(pg_url, tmp_path) as running:
        yield running


def _book(system: System) -> tuple[int, int, str]:
    system.clear_closures()
    with system.factory.begin() as session:
        contact = make_contact(session, timezone=daytime_zone())
        assert contact.phone is not None
        change = appointments.book(
            session,
            system.settings,
            contact_id=contact.id,
            starts_at=utcnow() + timedelta(days=2),
            type="infusion",
            timezone=contact.timezone,
            now=utcnow(),
        )
        return contact.id, change.appointment.id, contact.phone


def _status(system: System, appointment_id: int) -> str:
    with system.factory() as session:
        appointment = session.get(Appointment, appointment_id)
        assert appointment is not None
        return appointment.status


def _wait_for_request(system: System, phone: str) -> None:
    def asked() -> bool:
        return any(
            "Reply 1" in m.body
            for m in system.sandbox.control.messages(phone)
            if m.direction == "outbound-api"
        )

    wait_for(asked, timeout=30, what="the confirmation request on the patient's phone")


def test_reply_1_confirms_the_visit(system: System) -> None:
    _contact_id, appointment_id, phone = _book(system)
    _wait_for_request(system, phone)
    assert system.sandbox.control.reply(phone, "1").webhook_status == 200
    wait_for(
        lambda: _status(system, appointment_id) == AppointmentStatus.CONFIRMED,
        timeout=20,
        what="the appointment to show confirmed",
    )


def test_reply_2_requests_a_reschedule_and_opens_a_staff_task(system: System) -> None:
    contact_id, appointment_id, phone = _book(system)
    _wait_for_request(system, phone)
    system.sandbox.control.reply(phone, "2")
    wait_for(
        lambda: _status(system, appointment_id) == AppointmentStatus.RESCHEDULE_REQUESTED,
        timeout=20,
        what="the appointment to show reschedule requested",
    )
    with system.factory() as session:
        tasks = session.scalars(
            select(InboxItem).where(InboxItem.contact_id == contact_id, InboxItem.kind == "task")
        ).all()
        assert len(tasks) == 1
