"""The day view states what will actually happen to a visit's confirmation request: both databases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from outreach import appointments
from outreach.config import Settings
from outreach.models import Appointment, Contact
from tests.support.appointments import LA, la, mark_sent
from tests.support.factories import make_contact

MON_0830 = la(2026, 3, 2, 8, 30)  # Monday morning in Los Angeles, the clinic's zone


def _book(session: Session, settings: Settings, starts: int, now: float = 0) -> Appointment:
    contact = make_contact(session)
    booked_at = MON_0830 + timedelta(hours=now)
    change = appointments.book(
        session,
        settings,
        contact_id=contact.id,
        starts_at=MON_0830 + timedelta(hours=starts),
        type="follow-up",
        now=booked_at,
    )
    return change.appointment


def _entry(session: Session, appointment: Appointment) -> dict[str, object]:
    day = appointment.starts_at.astimezone(LA).date()
    [entry] = [e for e in appointments.day_view(session, day, LA) if e["id"] == appointment.id]
    return entry


def _outcomes(entry: dict[str, object]) -> dict[str, str]:
    return {m["reminder"]: m["outcome"] for m in entry["messages"]}  # type: ignore[attr-defined]


def test_a_request_folded_into_the_booking_text_reads_as_skipped_and_the_booking_text_as_the_request(
    session: Session, settings: Settings
) -> None:
    visit = _book(session, settings, starts=29)  # Tuesday 13:30
    entry = _entry(session, visit)
    assert entry["confirmation"] == "request goes Mon 2 Mar 2026, 08:30 Pacific"
    assert _outcomes(entry) == {
        "booked": "goes Mon 2 Mar 2026, 08:30 Pacific",
        "confirm_request": "skipped: combined: the booking message that day already asks to confirm "
        "this visit",
    }
    mark_sent(session, f"appointment:{visit.id}:reminder:booked:v1", MON_0830 + timedelta(minutes=1))
    assert _entry(session, visit)["confirmation"] == (
        "requested (sent Mon 2 Mar 2026, 08:31 Pacific), no answer yet"
    )
    appointments.confirm(session, settings, visit.id, now=MON_0830 + timedelta(minutes=5))
    assert _entry(session, visit)["confirmation"] == "confirmed Mon 2 Mar 2026, 08:35 Pacific"


def test_a_request_that_cannot_go_says_so_with_its_reason(session: Session, settings: Settings) -> None:
    # Booked at 22:00 for 07:30 the next morning: the window opens only after the visit starts.
    visit = _book(session, settings, starts=23, now=13 + 1 / 2)
    entry = _entry(session, visit)
    assert entry["confirmation"] == (
        "not requested (skipped: the allowed sending window opens only after the visit starts); "
        "confirm by phone"
    )
    assert "request goes" not in str(entry)


def test_a_request_held_by_a_crisis_pause_reads_as_held(session: Session, settings: Settings) -> None:
    visit = _book(session, settings, starts=3 * 24 + 2)  # Thursday 10:30: the request goes Wednesday
    patient = session.get(Contact, visit.contact_id)
    assert patient is not None
    patient.automation_paused_at = MON_0830 + timedelta(hours=1)
    session.flush()
    entry = _entry(session, visit)
    assert entry["confirmation"] == (
        "request held: automation paused for this patient since Mon 2 Mar 2026, 09:30 Pacific "
        "until staff clear it"
    )
