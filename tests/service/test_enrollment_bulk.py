"""The bulk enrollment path: many contacts with different answers in one call, and what makes
writing new enrollments without ON CONFLICT safe (the campaign lock, PostgreSQL, two sessions)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.campaigns import sync
from outreach.campaigns.enroll import enroll
from outreach.campaigns.reports import EnrollmentReport
from outreach.config import Settings
from outreach.db import make_engine, make_session_factory
from outreach.models import Contact, Enrollment, Message, Suppression
from outreach.outbox import rows
from tests.support.campaigns import SMALL_CAMPAIGN, add_contact, copy_templates, messages_of, utc
from tests.support.waiting import wait_for, waiting_for_a_lock

NOW = utc("2026-03-02 17:00")  # Monday 09:00 in Los Angeles


@pytest.fixture
def demo_settings(tmp_path: Path, db_url: str) -> Settings:
    return copy_templates(tmp_path, db_url, campaigns={"demo": SMALL_CAMPAIGN})


@pytest.fixture
def synced(session: Session, demo_settings: Settings) -> Session:
    sync.sync(session, demo_settings, NOW)
    session.commit()
    return session


def test_one_call_answers_for_every_contact_and_writes_only_the_usable_steps(
    synced: Session, demo_settings: Settings
) -> None:
    already = add_contact(synced)
    enroll(synced, demo_settings, "demo", [already], now=NOW)
    everything = add_contact(synced, timezone="America/New_York")
    email_only = add_contact(synced, consents={"email": ["education"]})
    bounced = add_contact(synced, email="bounced@example.org")
    synced.add(Suppression(channel="email", address="bounced@example.org", reason="hard bounce"))
    no_phone = add_contact(synced, phone=None)
    paused = add_contact(synced)
    synced.execute(update(Contact).where(Contact.id == paused).values(automation_paused_at=NOW))
    lost = add_contact(synced, timezone="Mars/Olympus_Mons")
    care_only = add_contact(synced, consents={"sms": ["care"], "email": ["care"]})
    synced.commit()
    wanted = [already, everything, email_only, bounced, no_phone, paused, lost, care_only, 424242]

    report = enroll(synced, demo_settings, "demo", wanted, now=NOW)
    synced.commit()

    assert report.already_enrolled == [already]
    assert report.enrolled == [everything, email_only, bounced, no_phone]
    assert report.refused == {
        paused: "automation is paused for this contact",
        lost: "the contact's time zone is unknown",
        care_only: "no education consent on email; no education consent on sms",
        424242: "no such contact",
    }
    skipped = {o.contact_id: o.skipped_steps for o in report.outcomes if o.outcome == "enrolled"}
    assert skipped == {
        everything: {},
        email_only: {"nudge": "no education consent on sms"},
        bounced: {"first": "email address suppressed", "second": "email address suppressed"},
        no_phone: {"nudge": "no phone number"},
    }
    steps = {cid: [m.step_key for m in messages_of(synced, cid)] for cid in wanted}
    assert steps == {
        already: ["first", "nudge", "second"],
        everything: ["first", "nudge", "second"],
        email_only: ["first", "second"],
        bounced: ["nudge"],
        no_phone: ["first", "second"],
        paused: [],
        lost: [],
        care_only: [],
        424242: [],
    }
    assert report.messages_created == 3 + 2 + 1 + 2
    assert [o.messages for o in report.outcomes if o.outcome == "enrolled"] == [3, 2, 1, 2]
    refused_enrollments = synced.scalar(
        select(func.count())
        .select_from(Enrollment)
        .where(Enrollment.contact_id.in_([paused, lost, care_only]))
    )
    assert refused_enrollments == 0


def test_each_message_names_its_own_enrollment_and_contact(synced: Session, demo_settings: Settings) -> None:
    # Enough contacts for enrollment ids of one and two digits, whose keys sort differently
    # as text ("enrollment:10:..." < "enrollment:9:...") than as numbers.
    contacts = [add_contact(synced, first_name=f"P{n}") for n in range(25)]
    synced.commit()
    report = enroll(synced, demo_settings, "demo", contacts, now=NOW)
    synced.commit()
    assert report.enrolled == contacts and report.messages_created == 75
    owner = {eid: cid for eid, cid in synced.execute(select(Enrollment.id, Enrollment.contact_id))}
    messages = list(synced.scalars(select(Message)))
    assert len(messages) == 75
    for message in messages:
        assert message.enrollment_id is not None and owner[message.enrollment_id] == message.contact_id
        assert message.step_key is not None
        assert message.idempotency_key == rows.enrollment_step_key(message.enrollment_id, message.step_key)
        assert (message.state, message.kind, message.attempts, message.max_attempts) == (
            rows.INITIAL_STATE,
            rows.DEFAULT_KIND,
            rows.INITIAL_ATTEMPTS,
            rows.MAX_ATTEMPTS,
        )
        assert message.context == {} and message.created_at == NOW
    enrollments = synced.scalars(select(Enrollment)).all()
    assert {(e.state, e.started_at, tuple(e.stopped_channels), e.paused_at) for e in enrollments} == {
        ("active", NOW, (), None)
    }


@pytest.fixture
def pg(pg_url: str, tmp_path: Path) -> Iterator[tuple[Settings, sessionmaker[Session], Engine]]:
    engine = make_engine(pg_url)
    settings = copy_templates(tmp_path, pg_url, campaigns={"demo": SMALL_CAMPAIGN})
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        sync.sync(session, settings, NOW)
    yield settings, factory, engine
    engine.dispose()


def test_a_concurrent_enrollment_waits_for_the_campaign_lock_and_then_creates_nothing(
    pg: tuple[Settings, sessionmaker[Session], Engine],
) -> None:
    settings, factory, engine = pg
    with factory() as session, session.begin():
        contact = add_contact(session)
    second: list[EnrollmentReport] = []
    errors: list[BaseException] = []

    def enroll_in_another_session() -> None:
        try:
            with factory() as other, other.begin():
                second.append(enroll(other, settings, "demo", [contact], now=NOW))
        except BaseException as error:  # handed to the test thread
            errors.append(error)

    with factory() as first, first.begin():
        report = enroll(first, settings, "demo", [contact], now=NOW)
        worker = threading.Thread(target=enroll_in_another_session)
        worker.start()
        wait_for(lambda: waiting_for_a_lock(engine), what="the second enrollment to wait for the lock")
    worker.join(30)

    assert not errors, errors
    assert report.enrolled == [contact] and report.messages_created == 3
    assert second[0].already_enrolled == [contact] and second[0].messages_created == 0
    with factory() as session:
        assert len(messages_of(session, contact)) == 3
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 1
