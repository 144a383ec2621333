"""Booking, rescheduling, cancelling, upserting: service tests on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach import appointments
from outreach.appointments import AppointmentData, AppointmentError
from outreach.appointments.planning import COMBINED
from outreach.config import Settings
from outreach.models import Appointment, Message, MessageState
from tests.support.appointments import LA, la, messages_of
from tests.support.factories import make_contact

NOW = la(2025, 6, 4, 12, 0)  # a Wednesday, noon in Los Angeles
VISIT = la(2025, 6, 10, 10, 0)  # the next Tuesday, 10:00


def count_messages(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Message)) or 0


def test_booking_materialises_the_policy_with_versioned_keys(session: Session, settings: Settings) -> None:
    contact = make_contact(session)
    change = appointments.book(
        session, settings, contact_id=contact.id, starts_at=VISIT, type="infusion", now=NOW
    )
    a = change.appointment
    rows = messages_of(session, a.id)
    assert set(rows) == {
        f"appointment:{a.id}:reminder:booked:v1",
        f"appointment:{a.id}:reminder:prep:v1",
        f"appointment:{a.id}:reminder:confirm_request:v1",
        f"appointment:{a.id}:reminder:day_of:v1",
    }
    assert sorted(change.message_ids) == sorted(m.id for m in rows.values())
    prep = rows[f"appointment:{a.id}:reminder:prep:v1"]
    assert prep.channel == "email" and prep.context["attach_ics"] is True
    assert prep.due_at.astimezone(LA).strftime("%a %H:%M") == "Sat 10:00"
    for message in rows.values():
        assert message.state == MessageState.SCHEDULED
        assert message.category == "care" and message.kind == "automated"
        assert message.appointment_version == 1 and message.not_after == VISIT
    booked = rows[f"appointment:{a.id}:reminder:booked:v1"]
    assert booked.due_at == NOW and booked.context["confirms"] == [[a.id, 1]]
    assert a.duration_minutes == 120 and a.timezone == settings.clinic_timezone


def test_a_reminder_whose_time_passed_is_recorded_skipped_with_a_reason(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    change = appointments.book(
        session,
        settings,
        contact_id=contact.id,
        starts_at=NOW + timedelta(hours=20),
        type="infusion",
        now=NOW,
    )
    rows = messages_of(session, change.appointment.id)
    prep = next(m for k, m in rows.items() if ":prep:" in k)
    assert prep.state == MessageState.SKIPPED and "had passed" in (prep.state_reason or "")
    assert {s["key"] for s in change.skipped} >= {prep.idempotency_key}


def test_unknown_type_and_past_time_are_refused(session: Session, settings: Settings) -> None:
    contact = make_contact(session)
    with pytest.raises(appointments.PolicyError, match="unknown appointment type"):
        appointments.book(session, settings, contact_id=contact.id, starts_at=VISIT, type="massage", now=NOW)
    with pytest.raises(AppointmentError, match="in the past"):
        appointments.book(
            session,
            settings,
            contact_id=contact.id,
            starts_at=NOW - timedelta(hours=1),
            type="infusion",
            now=NOW,
        )


def test_reschedule_cancels_the_old_reminders_and_materialises_new_ones(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    a = appointments.book(session, settings, contact_id=contact.id, starts_at=VISIT, type="infusion", now=NOW)
    later = NOW + timedelta(hours=1)
    change = appointments.reschedule(
        session, settings, a.appointment.id, VISIT + timedelta(days=2), now=later
    )
    assert change.appointment.version == 2 and change.cancelled_messages == 4
    rows = messages_of(session, a.appointment.id)
    old = [m for k, m in rows.items() if k.endswith(":v1")]
    new = [m for k, m in rows.items() if k.endswith(":v2")]
    assert all(m.state == MessageState.CANCELLED and "rescheduled" in (m.state_reason or "") for m in old)
    assert {m.reminder_key for m in new} == {"rescheduled", "prep", "confirm_request", "day_of"}
    assert all(m.appointment_version == 2 for m in new)
    assert sorted(change.message_ids) == sorted(m.id for m in new if m.state == MessageState.SCHEDULED)


def test_upsert_twice_is_idempotent_and_a_new_time_is_a_reschedule(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    data = AppointmentData(contact_id=contact.id, starts_at=VISIT, type="infusion", external_id="EHR-1")
    first = appointments.upsert(session, settings, data, now=NOW)
    before = count_messages(session)
    again = appointments.upsert(session, settings, data, now=NOW + timedelta(minutes=5))
    assert again.action == "unchanged" and again.message_ids == []
    assert count_messages(session) == before
    assert again.appointment.id == first.appointment.id and again.appointment.version == 1
    moved = appointments.upsert(
        session,
        settings,
        AppointmentData(
            contact_id=contact.id, starts_at=VISIT + timedelta(hours=2), type="infusion", external_id="EHR-1"
        ),
        now=NOW + timedelta(minutes=10),
    )
    assert moved.action == "rescheduled" and moved.appointment.version == 2
    assert session.scalar(select(func.count()).select_from(Appointment)) == 1


def test_upsert_refuses_to_move_a_visit_to_another_patient(session: Session, settings: Settings) -> None:
    one, other = make_contact(session), make_contact(session)
    data = AppointmentData(contact_id=one.id, starts_at=VISIT, type="infusion", external_id="EHR-2")
    appointments.upsert(session, settings, data, now=NOW)
    with pytest.raises(AppointmentError, match="another patient"):
        appointments.upsert(
            session,
            settings,
            AppointmentData(contact_id=other.id, starts_at=VISIT, type="infusion", external_id="EHR-2"),
            now=NOW,
        )


def test_cancel_stops_reminders_and_can_notify_the_patient(session: Session, settings: Settings) -> None:
    contact = make_contact(session)
    a = appointments.book(session, settings, contact_id=contact.id, starts_at=VISIT, type="infusion", now=NOW)
    change = appointments.cancel(
        session, settings, a.appointment.id, notify=True, now=NOW + timedelta(hours=1)
    )
    assert change.appointment.status == "cancelled" and change.cancelled_messages == 4
    assert all(m.state == MessageState.CANCELLED for m in messages_of(session, a.appointment.id).values())
    [notice] = [session.get(Message, i) for i in change.message_ids]
    assert notice is not None and notice.template == "sms/appointments/cancelled"
    # Not tied to the (now cancelled) visit, or the send-time check would drop it.
    assert notice.appointment_id is None and notice.context["appointment_time"] == "10:00 AM"
    quiet = appointments.book(
        session, settings, contact_id=contact.id, starts_at=VISIT, type="follow-up", now=NOW
    )
    assert appointments.cancel(session, settings, quiet.appointment.id, now=NOW).message_ids == []


def test_complete_starts_the_checkin_and_no_show_replaces_it(session: Session, settings: Settings) -> None:
    contact = make_contact(session)
    a = appointments.book(session, settings, contact_id=contact.id, starts_at=VISIT, type="infusion", now=NOW)
    after = VISIT + timedelta(hours=3)
    with pytest.raises(AppointmentError, match="not started"):
        appointments.complete(session, settings, a.appointment.id, now=NOW)
    done = appointments.complete(session, settings, a.appointment.id, now=after)
    [checkin] = [session.get(Message, i) for i in done.message_ids]
    assert checkin is not None and checkin.reminder_key == "checkin"
    assert checkin.due_at.astimezone(LA).strftime("%a %H:%M") == "Wed 10:00"
    missed = appointments.no_show(session, settings, a.appointment.id, now=after)
    session.refresh(checkin)
    assert checkin.state == MessageState.CANCELLED
    assert [session.get(Message, i).reminder_key for i in missed.message_ids] == ["missed"]  # type: ignore[union-attr]


def test_a_series_booked_together_gets_one_booking_confirmation(session: Session, settings: Settings) -> None:
    contact = make_contact(session)
    starts = [la(2025, 6, d, 10) for d in (9, 11, 13)]
    changes = appointments.book_series(
        session, settings, contact_id=contact.id, starts=starts, type="infusion", now=NOW
    )
    booked = session.scalars(select(Message).where(Message.reminder_key == "booked")).all()
    assert len(booked) == 1
    ids = [c.appointment.id for c in changes]
    assert booked[0].context["confirms"] == [[i, 1] for i in ids]
    assert len(booked[0].context["series_visits"]) == 3  # type: ignore[arg-type]
    preps = session.scalars(select(Message).where(Message.reminder_key == "prep")).all()
    assert [m.state for m in sorted(preps, key=lambda m: m.id)] == ["scheduled", "skipped", "skipped"]


def test_each_visit_of_a_series_reports_its_own_messages(session: Session, settings: Settings) -> None:
    """One re-plan covers the patient's every visit; each booking's answer names only the
    messages of its own visit (the series' one confirmation goes with the first)."""
    contact = make_contact(session)
    starts = [la(2025, 6, d, 10) for d in (9, 11, 13)]
    changes = appointments.book_series(
        session, settings, contact_id=contact.id, starts=starts, type="infusion", now=NOW
    )
    for change in changes:
        own = session.scalars(
            select(Message.id).where(
                Message.appointment_id == change.appointment.id, Message.state == MessageState.SCHEDULED
            )
        ).all()
        assert own and sorted(change.message_ids) == sorted(own)
        prefix = f"appointment:{change.appointment.id}:"
        assert all(skip["key"].startswith(prefix) for skip in change.skipped)
    assert any(change.skipped for change in changes)  # the later visits' combined preparations


def test_separate_bookings_waiting_for_the_window_share_one_confirmation(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    night = la(2025, 6, 4, 22, 0)
    first = appointments.book(
        session, settings, contact_id=contact.id, starts_at=VISIT, type="infusion", now=night
    )
    second = appointments.book(
        session,
        settings,
        contact_id=contact.id,
        starts_at=VISIT + timedelta(days=2),
        type="infusion",
        now=night,
    )
    waiting = session.scalars(
        select(Message).where(Message.reminder_key == "booked", Message.state == MessageState.SCHEDULED)
    ).all()
    assert len(waiting) == 1 and waiting[0].appointment_id == first.appointment.id
    assert waiting[0].context["confirms"] == [[first.appointment.id, 1], [second.appointment.id, 1]]
    assert waiting[0].updated_at == night  # the caller's clock, not the wall's
    assert waiting[0].due_at == la(2025, 6, 5, 8, 0)


NIGHT = la(2025, 6, 4, 22, 0)  # booking confirmations wait for 8:00


def _book(
    session: Session,
    settings: Settings,
    contact_id: int,
    days: int,
    at: datetime = NIGHT,
    kind: str = "infusion",
) -> appointments.Change:
    return appointments.book(
        session, settings, contact_id=contact_id, starts_at=VISIT + timedelta(days=days), type=kind, now=at
    )


def _waiting_confirmations(session: Session) -> list[tuple[int | None, object]]:
    """(visit, the visits its "1" confirms) of each booking confirmation still to go."""
    rows = session.scalars(
        select(Message)
        .where(Message.reminder_key == "booked", Message.state == MessageState.SCHEDULED)
        .order_by(Message.id)
    )
    return [(m.appointment_id, m.context["confirms"]) for m in rows]


def _set_confirmation_state(session: Session, appointment_id: int, state: MessageState) -> None:
    confirmation = session.scalars(
        select(Message).where(Message.appointment_id == appointment_id, Message.reminder_key == "booked")
    ).one()
    confirmation.state = str(state)
    session.flush()


def test_a_waiting_confirmation_absorbs_only_a_live_visit_of_its_own_type(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    infusion = _book(session, settings, contact.id, 0)
    consult = _book(session, settings, contact.id, 1, kind="consultation")
    appointments.cancel(session, settings, infusion.appointment.id, now=NIGHT + timedelta(minutes=5))
    later = _book(session, settings, contact.id, 2, at=NIGHT + timedelta(minutes=10))
    # The consultation's confirmation is its own; the cancelled infusion's took no one in.
    consult_id, later_id = consult.appointment.id, later.appointment.id
    assert _waiting_confirmations(session) == [(consult_id, [[consult_id, 1]]), (later_id, [[later_id, 1]])]


def test_a_confirmation_no_longer_waiting_takes_no_later_booking_in(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    first = _book(session, settings, contact.id, 0)
    _set_confirmation_state(session, first.appointment.id, MessageState.CANCELLED)  # stopped by hand
    second = _book(session, settings, contact.id, 2, at=NIGHT + timedelta(minutes=5))
    assert _waiting_confirmations(session) == [(second.appointment.id, [[second.appointment.id, 1]])]


def test_a_confirmation_already_due_takes_no_later_booking_in(session: Session, settings: Settings) -> None:
    contact = make_contact(session)
    first = _book(session, settings, contact.id, 0)
    # 8:05: the first confirmation was due at 8:00 and a sender may be taking it right now.
    second = _book(session, settings, contact.id, 2, at=la(2025, 6, 5, 8, 5))
    first_id, second_id = first.appointment.id, second.appointment.id
    assert _waiting_confirmations(session) == [(first_id, [[first_id, 1]]), (second_id, [[second_id, 1]])]


def test_a_visit_taken_into_a_cancelled_visits_confirmation_gets_its_own_back(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    first, second, third = (_book(session, settings, contact.id, days) for days in (0, 2, 4))
    cancelled = appointments.cancel(session, settings, first.appointment.id, now=NIGHT + timedelta(minutes=5))
    # One confirmation, the second visit's own, now telling of the third too, at the time
    # the first one's would have gone.
    second_id, third_id = second.appointment.id, third.appointment.id
    assert _waiting_confirmations(session) == [(second_id, [[second_id, 1], [third_id, 1]])]
    revived = session.scalars(
        select(Message).where(Message.id.in_(cancelled.message_ids), Message.reminder_key == "booked")
    ).one()
    assert revived.appointment_id == second_id and revived.due_at == la(2025, 6, 5, 8, 0)
    assert revived.context["series_visits"] == ["Thu, Jun 12 at 10:00 AM", "Sat, Jun 14 at 10:00 AM"]
    # A visit booked after that joins it, not the cancelled one's.
    fourth = _book(session, settings, contact.id, 6, at=NIGHT + timedelta(minutes=10))
    assert _waiting_confirmations(session) == [
        (second_id, [[second_id, 1], [third_id, 1], [fourth.appointment.id, 1]])
    ]


def test_a_confirmation_brought_back_lists_its_visits_in_their_order(
    session: Session, settings: Settings
) -> None:
    """The notice that comes back is the one due first (the visit booked first), not always
    the earliest visit's: its lines still read in the order of the visits."""
    contact = make_contact(session)
    first, later, earlier = (_book(session, settings, contact.id, days) for days in (0, 6, 2))
    appointments.cancel(session, settings, first.appointment.id, now=NIGHT + timedelta(minutes=5))
    later_id, earlier_id = later.appointment.id, earlier.appointment.id
    assert _waiting_confirmations(session) == [(later_id, [[later_id, 1], [earlier_id, 1]])]
    assert _lines(session, later_id) == ["Thu, Jun 12 at 10:00 AM", "Mon, Jun 16 at 10:00 AM"]


def test_a_visit_taken_into_a_moved_visits_confirmation_gets_its_own_back(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    first, second = (_book(session, settings, contact.id, days) for days in (0, 2))
    appointments.reschedule(
        session, settings, first.appointment.id, VISIT + timedelta(days=7), now=NIGHT + timedelta(minutes=5)
    )
    assert _waiting_confirmations(session) == [(second.appointment.id, [[second.appointment.id, 1]])]


def test_a_visit_cancelled_or_moved_leaves_the_waiting_confirmation_that_took_it_in(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    first, second, third = (_book(session, settings, contact.id, days) for days in (0, 2, 4))
    later = NIGHT + timedelta(minutes=5)
    appointments.cancel(session, settings, second.appointment.id, now=later)
    appointments.reschedule(session, settings, third.appointment.id, VISIT + timedelta(days=9), now=later)
    # The first visit's confirmation tells of the first visit alone now; the moved one is told
    # of by its own "rescheduled" notice, not by the old time in another visit's message.
    assert _waiting_confirmations(session) == [(first.appointment.id, [[first.appointment.id, 1]])]
    shared = session.scalars(
        select(Message).where(Message.reminder_key == "booked").order_by(Message.id)
    ).first()
    assert shared is not None and shared.context["series_visits"] == ["Tue, Jun 10 at 10:00 AM"]
    # Cancelling the first visit then brings back neither withdrawn visit's old confirmation.
    appointments.cancel(session, settings, first.appointment.id, now=later + timedelta(minutes=5))
    assert _waiting_confirmations(session) == []


def test_a_visit_of_a_series_leaves_the_confirmation_that_tells_of_it_and_the_rest_stay(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    first = _book(session, settings, contact.id, 0)
    ids = [first.appointment.id, *_book_series(session, settings, contact.id, (2, 4, 6))]
    appointments.cancel(session, settings, ids[1], now=NIGHT + timedelta(minutes=5))
    appointments.cancel(session, settings, ids[3], now=NIGHT + timedelta(minutes=5))
    # The first visit's confirmation still tells of the series' middle visit, and only of it.
    assert _waiting_confirmations(session) == [(ids[0], [[ids[0], 1], [ids[2], 1]])]
    shared = session.scalars(
        select(Message).where(Message.appointment_id == ids[0], Message.reminder_key == "booked")
    ).one()
    assert shared.context["series_visits"] == ["Tue, Jun 10 at 10:00 AM", "Sat, Jun 14 at 10:00 AM"]


def _book_series(
    session: Session,
    settings: Settings,
    contact_id: int,
    days: tuple[int, ...],
    at: datetime = NIGHT,
    kind: str = "infusion",
) -> list[int]:
    changes = appointments.book_series(
        session,
        settings,
        contact_id=contact_id,
        starts=[VISIT + timedelta(days=d) for d in days],
        type=kind,
        now=at,
    )
    return [c.appointment.id for c in changes]


def _lines(session: Session, appointment_id: int) -> object:
    notice = session.scalars(
        select(Message).where(
            Message.appointment_id == appointment_id,
            Message.reminder_key == "booked",
            Message.state == MessageState.SCHEDULED,
        )
    ).one()
    return notice.context["series_visits"]


def test_cancelling_or_moving_the_first_visit_of_a_series_tells_the_rest_of_their_booking(
    session: Session, settings: Settings
) -> None:
    """A series booked together has one confirmation, on its first visit; the others have none
    of their own to bring back. When that visit goes before the message does, the rest of the
    series get one telling of them, at the time it would have gone."""
    contact = make_contact(session)
    first, second, third = _book_series(session, settings, contact.id, (0, 2, 4))
    cancelled = appointments.cancel(session, settings, first, now=NIGHT + timedelta(minutes=5))
    assert _waiting_confirmations(session) == [(second, [[second, 1], [third, 1]])]
    assert _lines(session, second) == ["Thu, Jun 12 at 10:00 AM", "Sat, Jun 14 at 10:00 AM"]
    told = session.scalars(
        select(Message).where(Message.id.in_(cancelled.message_ids), Message.reminder_key == "booked")
    ).one()
    assert told.due_at == la(2025, 6, 5, 8, 0)

    other = make_contact(session)
    moved, *rest = _book_series(session, settings, other.id, (0, 2))
    later = NIGHT + timedelta(minutes=5)
    appointments.reschedule(session, settings, moved, VISIT + timedelta(days=20), now=later)
    # Its own confirmation is the "rescheduled" notice; the rest of the series gets its own.
    assert (rest[0], [[rest[0], 1]]) in _waiting_confirmations(session)


def test_a_series_told_of_by_a_notice_without_a_1_is_told_again_by_its_lines(
    session: Session, settings: Settings
) -> None:
    """A booster series' details email asks nothing: it tells of its visits by their lines.
    When the series' first visit is cancelled, the rest get their own details email."""
    contact = make_contact(session)
    first, second, third = _book_series(session, settings, contact.id, (0, 2, 4), kind="booster")
    appointments.cancel(session, settings, first, now=NIGHT + timedelta(minutes=5))
    details = session.scalars(
        select(Message).where(Message.reminder_key == "details", Message.state == MessageState.SCHEDULED)
    ).one()
    assert details.appointment_id == second and details.due_at == la(2025, 6, 5, 8, 0)
    assert details.context["series_visits"] == ["Thu, Jun 12 at 10:00 AM", "Sat, Jun 14 at 10:00 AM"]
    assert _waiting_confirmations(session) == [(second, [[second, 1], [third, 1]])]


def test_a_series_taken_into_an_earlier_confirmation_is_told_again_when_that_visit_goes(
    session: Session, settings: Settings
) -> None:
    """The series' first visit was taken into the confirmation of a visit booked earlier that
    evening, then cancelled; then the earlier visit is: the rest of the series, in no other
    message, get a confirmation of their own."""
    contact = make_contact(session)
    earlier = _book(session, settings, contact.id, 0).appointment.id
    first, second, third = _book_series(session, settings, contact.id, (2, 4, 6))
    appointments.cancel(session, settings, first, now=NIGHT + timedelta(minutes=5))
    assert _waiting_confirmations(session) == [(earlier, [[earlier, 1], [second, 1], [third, 1]])]
    appointments.cancel(session, settings, earlier, now=NIGHT + timedelta(minutes=10))
    assert _waiting_confirmations(session) == [(second, [[second, 1], [third, 1]])]


def test_a_booking_taken_into_a_series_confirmation_carries_the_rest_of_the_series_in_time_order(
    session: Session, settings: Settings
) -> None:
    """A later visit's own confirmation, brought back when the series' first visit is
    cancelled, tells of the series' other visits too, in the order of the visits."""
    contact = make_contact(session)
    first, second, third = _book_series(session, settings, contact.id, (2, 4, 8))
    later = _book(session, settings, contact.id, 6, at=NIGHT + timedelta(minutes=1)).appointment.id
    appointments.cancel(session, settings, first, now=NIGHT + timedelta(minutes=5))
    assert _waiting_confirmations(session) == [(later, [[later, 1], [second, 1], [third, 1]])]
    assert _lines(session, later) == [
        "Sat, Jun 14 at 10:00 AM",
        "Mon, Jun 16 at 10:00 AM",
        "Wed, Jun 18 at 10:00 AM",
    ]


def test_a_confirmation_already_sent_is_not_sent_again_for_a_later_cancellation(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    first, _second = (_book(session, settings, contact.id, days) for days in (0, 2))
    _set_confirmation_state(session, first.appointment.id, MessageState.SENT)  # at 8:00, of both visits
    appointments.cancel(session, settings, first.appointment.id, now=la(2025, 6, 5, 9, 0))
    assert _waiting_confirmations(session) == []


def test_cancelling_the_first_visit_of_a_series_brings_back_the_next_ones_preparation(
    session: Session, settings: Settings
) -> None:
    contact = make_contact(session)
    starts = [la(2025, 6, d, 10) for d in (9, 11, 13)]
    changes = appointments.book_series(
        session, settings, contact_id=contact.id, starts=starts, type="infusion", now=NOW
    )
    wed = changes[1].appointment.id
    prep_key = f"appointment:{wed}:reminder:prep:v1"
    assert (messages_of(session, wed)[prep_key].state_reason or "").startswith(COMBINED)
    appointments.cancel(session, settings, changes[0].appointment.id, now=NOW + timedelta(hours=1))
    prep = messages_of(session, wed)[prep_key]
    session.refresh(prep)
    assert prep.state == MessageState.SCHEDULED and prep.state_reason is None
    assert prep.context["series_visits"] == ["Wed, Jun 11 at 10:00 AM", "Fri, Jun 13 at 10:00 AM"]


def test_staff_confirmation_stops_pending_requests(session: Session, settings: Settings) -> None:
    contact = make_contact(session)
    a = appointments.book(session, settings, contact_id=contact.id, starts_at=VISIT, type="infusion", now=NOW)
    change = appointments.confirm(session, settings, a.appointment.id, now=NOW)
    assert change.appointment.status == "confirmed"
    states = {m.reminder_key: m.state for m in messages_of(session, a.appointment.id).values()}
    assert states["confirm_request"] == MessageState.CANCELLED and states["booked"] == MessageState.CANCELLED
    assert states["day_of"] == MessageState.SCHEDULED


def test_day_view_shows_confirmation_state_and_messages(session: Session, settings: Settings) -> None:
    contact = make_contact(session)
    a = appointments.book(session, settings, contact_id=contact.id, starts_at=VISIT, type="infusion", now=NOW)
    appointments.book(
        session, settings, contact_id=contact.id, starts_at=VISIT + timedelta(days=1), type="booster", now=NOW
    )
    [entry] = appointments.day_view(session, VISIT.astimezone(LA).date(), LA)
    assert entry["id"] == a.appointment.id
    assert entry["confirmation"] == "request goes Wed 4 Jun 2025, 12:00 Pacific"
    assert {m["reminder"] for m in entry["messages"]} == {"booked", "prep", "confirm_request", "day_of"}
    assert entry["local_starts_at"].startswith("2025-06-10T10:00")
