"""`outreach messages list` says what will actually happen to each message: both databases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from outreach.delivery.views import list_messages, message_detail
from tests.support.appointments import LA, la
from tests.support.factories import make_contact, make_message

MON_0900 = la(2026, 3, 2, 9, 0)


def test_each_message_reads_as_what_happens_to_it_in_the_clinics_time(session: Session) -> None:
    contact = make_contact(session)
    due = make_message(session, contact, kind="automated", due_at=MON_0900)
    held = make_message(
        session,
        contact,
        kind="automated",
        due_at=MON_0900 + timedelta(days=1),
        state_reason="outside the allowed sending window; moved to the next opening",
    )
    skipped = make_message(
        session, contact, kind="automated", state="skipped", state_reason="no care consent for sms"
    )
    sent = make_message(session, contact, kind="automated", state="sent", sent_at=MON_0900)
    rows = {r["id"]: r["outcome"] for r in list_messages(session, contact_id=contact.id, staff_zone=LA)}
    assert rows == {
        due.id: "goes Mon 2 Mar 2026, 09:00 Pacific",
        held.id: "held until Tue 3 Mar 2026, 09:00 Pacific: outside the allowed sending window; "
        "moved to the next opening",
        skipped.id: "skipped: no care consent for sms",
        sent.id: "sent Mon 2 Mar 2026, 09:00 Pacific",
    }


def test_a_paused_patients_automated_messages_read_as_held_not_scheduled(session: Session) -> None:
    contact = make_contact(session)
    reminder = make_message(session, contact, kind="automated", due_at=MON_0900)
    contact.automation_paused_at = MON_0900 - timedelta(hours=2)
    session.flush()
    expected = (
        "held: automation paused for this patient since Mon 2 Mar 2026, 07:00 Pacific until staff clear it"
    )
    assert message_detail(session, reminder.id, LA)["outcome"] == expected
    assert list_messages(session, contact_id=contact.id, staff_zone=LA)[0]["outcome"] == expected
