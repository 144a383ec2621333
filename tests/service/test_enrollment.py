"""Enrollment against a real database (SQLite and PostgreSQL): idempotency, consent, pause, caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from outreach.campaigns import eligibility, lifecycle, sync
from outreach.campaigns.enroll import enroll
from outreach.campaigns.preview import preview
from outreach.campaigns.reports import ALREADY_SENT_REASON
from outreach.config import Settings
from outreach.db import make_engine, make_session_factory
from outreach.delivery import caps
from outreach.delivery.views import list_messages
from outreach.models import Closure, Contact, Enrollment, Message, MessageState
from outreach.outbox import rows
from tests.support.campaigns import (
    SMALL_CAMPAIGN,
    add_contact,
    copy_templates,
    messages_of,
    utc,
    write_campaign,
)

NOW = utc("2026-03-02 17:00")  # Monday 09:00 in Los Angeles
LA = ZoneInfo("America/Los_Angeles")

OTHER_CAMPAIGN = SMALL_CAMPAIGN.replace("slug: demo", "slug: other").replace("Demo series", "Other series")


@pytest.fixture
def demo_settings(tmp_path: Path, db_url: str) -> Settings:
    return copy_templates(tmp_path, db_url, campaigns={"demo": SMALL_CAMPAIGN, "other": OTHER_CAMPAIGN})


@pytest.fixture
def synced(session: Session, demo_settings: Settings) -> Session:
    sync.sync(session, demo_settings, NOW)
    session.commit()
    return session


def local_times(messages: list[Message], zone: ZoneInfo = LA) -> list[str]:
    return [m.due_at.astimezone(zone).strftime("%a %m-%d %H:%M") for m in messages]


def test_enrollment_materialises_every_step_as_scheduled_messages(
    synced: Session, demo_settings: Settings
) -> None:
    contact = add_contact(synced)
    report = enroll(synced, demo_settings, "demo", [contact], now=NOW)
    synced.commit()
    messages = messages_of(synced, contact)
    assert report.enrolled == [contact] and report.messages_created == 3
    assert [m.step_key for m in messages] == ["first", "nudge", "second"]
    assert local_times(messages) == ["Mon 03-02 10:00", "Wed 03-04 12:00", "Fri 03-06 10:00"]
    enrollment_id = synced.scalar(select(Enrollment.id).where(Enrollment.contact_id == contact))
    for message in messages:
        assert message.state == MessageState.SCHEDULED
        assert message.kind == "automated" and message.category == "education"
        assert message.enrollment_id == enrollment_id and enrollment_id is not None
        assert message.step_key is not None
        assert message.idempotency_key == rows.enrollment_step_key(enrollment_id, message.step_key)
        assert message.due_at.tzinfo is not None
    assert [m.channel for m in messages] == ["email", "sms", "email"]
    assert messages[0].template == "email/education/ketamine/01_what_it_is"


def test_enrolling_twice_creates_nothing_new(synced: Session, demo_settings: Settings) -> None:
    contact = add_contact(synced)
    enroll(synced, demo_settings, "demo", [contact], now=NOW)
    synced.commit()
    again = enroll(synced, demo_settings, "demo", [contact], now=NOW + timedelta(hours=1))
    synced.commit()
    assert again.already_enrolled == [contact] and again.messages_created == 0
    assert len(messages_of(synced, contact)) == 3
    assert synced.scalar(select(Enrollment.id).where(Enrollment.contact_id == contact)) is not None


def test_contact_without_consent_is_refused_with_a_reason(synced: Session, demo_settings: Settings) -> None:
    nobody = add_contact(synced, consents={"sms": ["care"], "email": ["care"]})
    report = enroll(synced, demo_settings, "demo", [nobody, 4242], now=NOW)
    assert report.refused == {
        nobody: "no education consent on email; no education consent on sms",
        4242: "no such contact",
    }
    assert messages_of(synced, nobody) == []
    assert synced.scalar(select(Enrollment).where(Enrollment.contact_id == nobody)) is None


def test_email_only_consent_enrolls_with_sms_steps_skipped_and_reported(
    synced: Session, demo_settings: Settings
) -> None:
    contact = add_contact(synced, consents={"email": ["education"]})
    report = enroll(synced, demo_settings, "demo", [contact], now=NOW)
    assert report.enrolled == [contact]
    assert report.outcomes[0].skipped_steps == {"nudge": "no education consent on sms"}
    assert [m.step_key for m in messages_of(synced, contact)] == ["first", "second"]


def test_missing_phone_and_crisis_pause_are_reported(synced: Session, demo_settings: Settings) -> None:
    no_phone = add_contact(synced, phone=None)
    paused = add_contact(synced)
    synced.execute(update(Contact).where(Contact.id == paused).values(automation_paused_at=NOW))
    report = enroll(synced, demo_settings, "demo", [no_phone, paused], now=NOW)
    assert report.outcomes[0].skipped_steps == {"nudge": "no phone number"}
    assert report.refused == {paused: "automation is paused for this contact"}


def test_enrolling_later_at_night_shifts_into_the_window(synced: Session, demo_settings: Settings) -> None:
    contact = add_contact(synced, timezone="America/New_York")
    evening = utc("2026-03-03 00:55")  # 19:55 in New York
    enroll(synced, demo_settings, "demo", [contact], now=evening)
    ny = ZoneInfo("America/New_York")
    # Day-0 10:00 had passed: it goes at once (still inside the window); the rest keep their days.
    assert local_times(messages_of(synced, contact), ny) == [
        "Mon 03-02 19:55",
        "Wed 03-04 12:00",
        "Fri 03-06 10:00",
    ]


def test_unenroll_cancels_pending_messages_and_keeps_sent_ones(
    synced: Session, demo_settings: Settings
) -> None:
    contact = add_contact(synced)
    enroll(synced, demo_settings, "demo", [contact], now=NOW)
    first = messages_of(synced, contact)[0]
    synced.execute(update(Message).where(Message.id == first.id).values(state=MessageState.SENT))
    result = lifecycle.unenroll(synced, slug="demo", contact_ids=[contact], now=NOW)
    synced.commit()
    synced.expire_all()
    states = [(m.step_key, m.state) for m in messages_of(synced, contact)]
    assert result.enrollments == 1 and result.messages_cancelled == 2
    assert states == [("first", "sent"), ("nudge", "cancelled"), ("second", "cancelled")]


def unenrolled_after_first_step(synced: Session, demo_settings: Settings, state: MessageState) -> int:
    """A contact enrolled in demo at NOW whose first message reached ``state``, then unenrolled."""
    contact = add_contact(synced)
    enroll(synced, demo_settings, "demo", [contact], now=NOW)
    first = messages_of(synced, contact)[0]
    synced.execute(update(Message).where(Message.id == first.id).values(state=state))
    lifecycle.unenroll(synced, slug="demo", contact_ids=[contact], now=NOW)
    return contact


def test_enrolling_again_after_unenroll_schedules_afresh_and_never_resends_what_was_sent(
    synced: Session, demo_settings: Settings
) -> None:
    contact = unenrolled_after_first_step(synced, demo_settings, MessageState.SENT)
    later = utc("2026-03-16 17:00")  # two weeks on, Monday 10:00 in Los Angeles (PDT)
    again = enroll(synced, demo_settings, "demo", [contact], now=later)
    synced.commit()
    synced.expire_all()
    assert again.enrolled == [contact] and again.messages_created == 2
    assert again.outcomes[0].skipped_steps == {"first": ALREADY_SENT_REASON}
    pending = [m for m in messages_of(synced, contact) if m.state == MessageState.SCHEDULED]
    # The series starts again from the new start: day 2 and day 4 after March 16.
    assert [m.step_key for m in pending] == ["nudge", "second"]
    assert local_times(pending) == ["Wed 03-18 12:00", "Fri 03-20 10:00"]
    old_keys = {m.idempotency_key for m in messages_of(synced, contact) if m.state != MessageState.SCHEDULED}
    assert not old_keys & {m.idempotency_key for m in pending}
    assert [m.step_key for m in messages_of(synced, contact) if m.state == MessageState.SENT] == ["first"]
    assert synced.scalar(select(Enrollment.state).where(Enrollment.contact_id == contact)) == "active"
    # Enrolling once more while active changes nothing.
    assert enroll(synced, demo_settings, "demo", [contact], now=later).messages_created == 0


def test_an_enrollment_completes_when_its_last_message_is_done(
    synced: Session, demo_settings: Settings
) -> None:
    contact = add_contact(synced)
    enroll(synced, demo_settings, "demo", [contact], now=NOW)
    first, nudge, second = messages_of(synced, contact)
    for message, state in ((first, MessageState.DELIVERED), (nudge, MessageState.FAILED)):
        synced.execute(update(Message).where(Message.id == message.id).values(state=state))
    assert lifecycle.complete_finished(synced, NOW) == []
    synced.execute(update(Message).where(Message.id == second.id).values(state=MessageState.SENT))
    enrollment_id = synced.scalars(select(Enrollment.id).where(Enrollment.contact_id == contact)).one()
    assert lifecycle.complete_finished(synced, NOW) == [enrollment_id]
    synced.commit()
    assert synced.scalar(select(Enrollment.state).where(Enrollment.id == enrollment_id)) == "completed"
    # Enrolled again: only the step whose message failed is scheduled again.
    again = enroll(synced, demo_settings, "demo", [contact], now=utc("2026-03-16 17:00"))
    assert (again.enrolled, again.messages_created) == ([contact], 1)
    assert again.outcomes[0].skipped_steps == {"first": ALREADY_SENT_REASON, "second": ALREADY_SENT_REASON}
    synced.expire_all()
    pending = [m for m in messages_of(synced, contact) if m.state == MessageState.SCHEDULED]
    assert [(m.step_key, m.idempotency_key) for m in pending] == [
        ("nudge", rows.enrollment_step_key(enrollment_id, "nudge", 1))
    ]
    # A pause and resume in the new run bring the step back, whatever the first run's row says.
    lifecycle.pause(synced, contact_ids=[contact], now=utc("2026-03-16 18:00"))
    resumed = lifecycle.resume(synced, demo_settings, contact_ids=[contact], now=utc("2026-03-16 19:00"))
    assert resumed.messages_created == 1


def test_enrolling_a_finished_series_again_completes_it_and_refuses_when_everything_went_out(
    synced: Session, demo_settings: Settings
) -> None:
    contact = add_contact(synced)
    enroll(synced, demo_settings, "demo", [contact], now=NOW)
    synced.execute(update(Message).where(Message.contact_id == contact).values(state=MessageState.DELIVERED))
    # No sweep has run yet: enroll itself sees that the series is over.
    again = enroll(synced, demo_settings, "demo", [contact], now=NOW + timedelta(days=7))
    assert again.refused == {contact: f"every step was {ALREADY_SENT_REASON}"}
    assert synced.scalar(select(Enrollment.state).where(Enrollment.contact_id == contact)) == "completed"
    assert len(messages_of(synced, contact)) == 3


def test_pause_cancels_pending_and_resume_reschedules_the_rest_shifted(
    synced: Session, demo_settings: Settings
) -> None:
    contact = add_contact(synced)
    enroll(synced, demo_settings, "demo", [contact], now=NOW)
    first = messages_of(synced, contact)[0]
    synced.execute(update(Message).where(Message.id == first.id).values(state=MessageState.DELIVERED))
    paused = lifecycle.pause(synced, contact_ids=[contact], now=utc("2026-03-03 17:00"))
    assert (paused.enrollments, paused.messages_cancelled) == (1, 2)
    synced.expire_all()
    assert {m.state for m in messages_of(synced, contact) if m.step_key != "first"} == {"cancelled"}
    # Paused for exactly two days: the remaining steps keep their spacing, two days later.
    resumed = lifecycle.resume(synced, demo_settings, contact_ids=[contact], now=utc("2026-03-05 17:00"))
    synced.commit()
    assert (resumed.enrollments, resumed.messages_created) == (1, 2)
    pending = [m for m in messages_of(synced, contact) if m.state == MessageState.SCHEDULED]
    assert [m.step_key for m in pending] == ["nudge", "second"]
    assert local_times(pending) == ["Fri 03-06 12:00", "Sun 03-08 10:00"]
    assert pending[0].idempotency_key.endswith(":step:nudge:r1")
    # Resuming again (nothing paused) and enrolling again change nothing.
    assert lifecycle.resume(synced, demo_settings, contact_ids=[contact], now=NOW).enrollments == 0
    assert enroll(synced, demo_settings, "demo", [contact], now=NOW).messages_created == 0


def test_pause_needs_a_scope(synced: Session) -> None:
    with pytest.raises(Exception, match="say which enrollments"):
        lifecycle.pause(synced, now=NOW)


def test_frequency_cap_spreads_two_campaigns_for_one_contact(
    synced: Session, demo_settings: Settings
) -> None:
    contact = add_contact(synced)
    enroll(synced, demo_settings, "demo", [contact], now=NOW)
    enroll(synced, demo_settings, "other", [contact], now=NOW)
    synced.commit()
    days = [m.due_at.astimezone(LA).date() for m in messages_of(synced, contact)]
    assert len(days) == 6
    assert len(set(days)) == 6, "at most one education message per local day"
    for day in days:
        assert sum(1 for d in days if day <= d < day + timedelta(days=7)) <= 3


def test_patients_with_the_same_answers_get_their_own_plan_when_one_has_capped_history(
    synced: Session, demo_settings: Settings
) -> None:
    """Plans are shared by patients with the same answers; a patient already in another
    education campaign is planned around it, however many fresh patients come first."""
    fresh, busy = add_contact(synced), add_contact(synced)
    enroll(synced, demo_settings, "demo", [busy], now=NOW)
    report = enroll(synced, demo_settings, "other", [fresh, busy], now=NOW)
    synced.commit()
    assert sorted(report.enrolled) == sorted([fresh, busy])
    other = messages_of(synced, fresh)
    busy_days = [m.due_at.astimezone(LA).date() for m in messages_of(synced, busy)]
    assert local_times(other) == ["Mon 03-02 10:00", "Wed 03-04 12:00", "Fri 03-06 10:00"]
    assert len(busy_days) == 6 and len(set(busy_days)) == 6, "one education message a day"


def cap_violation(session: Session, settings: Settings, message: Message, now: datetime) -> str | None:
    """The send-time cap check for one message, with what it reads loaded as the sender does."""
    assert message.contact_id is not None
    recent = caps.recent_sends(session, [message.contact_id], now).get(message.contact_id, [])
    return caps.cap_violation(settings, message, LA, recent, now)


def test_cap_violation_at_send_time_counts_what_went_out_today(
    synced: Session, demo_settings: Settings
) -> None:
    contact = add_contact(synced)
    enroll(synced, demo_settings, "demo", [contact], now=NOW)
    enroll(synced, demo_settings, "other", [contact], now=NOW)
    messages = messages_of(synced, contact)
    first, second = messages[0], messages[1]
    assert cap_violation(synced, demo_settings, second, NOW) is None
    synced.execute(update(Message).where(Message.id == first.id).values(state=MessageState.SENT, sent_at=NOW))
    synced.expire_all()
    reason = cap_violation(synced, demo_settings, second, NOW + timedelta(hours=2))
    assert reason is not None and "already sent today" in reason
    assert cap_violation(synced, demo_settings, second, NOW + timedelta(days=1)) is None


def test_closure_day_shifts_messages_to_the_next_open_day(synced: Session, demo_settings: Settings) -> None:
    synced.add(Closure(day="2026-03-04", reason="staff training"))
    synced.flush()
    contact = add_contact(synced)
    enroll(synced, demo_settings, "demo", [contact], now=NOW)
    assert local_times(messages_of(synced, contact)) == [
        "Mon 03-02 10:00",
        "Thu 03-05 08:00",
        "Fri 03-06 10:00",
    ]


def test_enroll_by_tag_finds_the_tagged_contacts(synced: Session, demo_settings: Settings) -> None:
    tagged = [add_contact(synced, tags=["new-patient"]) for _ in range(3)]
    add_contact(synced, tags=["other"])
    ids = eligibility.contact_ids_for_tag(synced, "new-patient")
    report = enroll(
        synced, demo_settings, "demo", ids, start=datetime(2026, 3, 9, 17, tzinfo=UTC), now=NOW
    )
    assert sorted(report.enrolled) == tagged
    assert local_times(messages_of(synced, tagged[0]))[0] == "Mon 03-09 10:00"


def test_messages_list_filters_by_campaign(synced: Session, demo_settings: Settings) -> None:
    contact = add_contact(synced)
    enroll(synced, demo_settings, "demo", [contact], now=NOW)
    enroll(synced, demo_settings, "other", [contact], now=NOW)
    synced.flush()
    listed = {
        slug: {row["idempotency_key"] for row in list_messages(synced, campaign=slug)}
        for slug in ("demo", "other")
    }
    assert listed["demo"] and listed["other"]
    assert not listed["demo"] & listed["other"]
    assert listed["demo"] | listed["other"] == {m.idempotency_key for m in messages_of(synced, contact)}


def test_preview_after_unenroll_is_what_enrolling_again_creates(
    synced: Session, demo_settings: Settings
) -> None:
    contact = unenrolled_after_first_step(synced, demo_settings, MessageState.DELIVERED)
    later = utc("2026-03-16 17:00")
    steps = preview(synced, demo_settings, "demo", contact, start=None, now=later)
    assert [(s.key, s.would_send, s.reason) for s in steps] == [
        ("first", False, ALREADY_SENT_REASON),
        ("nudge", True, None),
        ("second", True, None),
    ]
    enroll(synced, demo_settings, "demo", [contact], now=later)
    synced.expire_all()
    pending = [m for m in messages_of(synced, contact) if m.state == MessageState.SCHEDULED]
    assert [m.due_at for m in pending] == [s.due_at for s in steps if s.would_send]


def test_completion_never_marks_an_enrollment_that_a_new_step_is_being_added_to(
    pg_url: str, tmp_path: Path
) -> None:
    settings = copy_templates(tmp_path, pg_url, campaigns={"demo": SMALL_CAMPAIGN})
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory() as setup, setup.begin():
        sync.sync(setup, settings, NOW)
        contact = add_contact(setup)
        enroll(setup, settings, "demo", [contact], now=NOW)
        setup.execute(update(Message).values(state=MessageState.DELIVERED))
    third = "  - key: third\n    channel: email\n    template: email/education/ketamine/02_how_it_works\n"
    write_campaign(settings, "demo", SMALL_CAMPAIGN + third + '    day: 6\n    at: "10:00"\n')
    with factory() as syncing:
        assert sync.sync(syncing, settings, NOW).campaigns[0].messages_created == 1
        # The series looks finished to anyone who cannot see the uncommitted step.
        with factory() as sweeping, sweeping.begin():
            assert lifecycle.complete_finished(sweeping, NOW) == []
        syncing.commit()
    with factory() as sweeping, sweeping.begin():
        assert lifecycle.complete_finished(sweeping, NOW) == []
        assert sweeping.scalar(select(Enrollment.state).where(Enrollment.contact_id == contact)) == "active"
    engine.dispose()
