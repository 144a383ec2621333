"""The foreign keys that triggers keep (migration 0003): messages and enrollments name a
contact, appointment and campaign that exist; deleting a parent deletes what names it; a
parent's id does not change. On both databases, and on PostgreSQL under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from outreach.db import make_engine, make_session_factory
from outreach.models import (
    Appointment,
    Campaign,
    Contact,
    Enrollment,
    Message,
    MessageAttempt,
    MessageEvent,
    utcnow,
)
from outreach.outbox import rows as outbox_rows
from tests.support.waiting import wait_for, waiting_for_a_lock

MISSING = 987654


@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    """PostgreSQL only: the statement-level checks, TRUNCATE and row locks are its own."""
    engine = make_engine(pg_url)
    yield engine, make_session_factory(engine)
    engine.dispose()


def _contact(session: Session) -> int:
    # No consent: consent history is append-only, and a contact with any cannot be deleted.
    contact = Contact(first_name="Pat", last_name="Example", timezone="America/Los_Angeles")
    session.add(contact)
    session.flush()
    return contact.id


def _appointment(session: Session, contact_id: int) -> int:
    appointment = Appointment(
        contact_id=contact_id, starts_at=utcnow() + timedelta(days=2), timezone="America/Los_Angeles",
        type="infusion",
    )
    session.add(appointment)
    session.flush()
    return appointment.id


def _campaign(session: Session, slug: str = "series") -> int:
    campaign = Campaign(slug=slug, name="Series", category="education")
    session.add(campaign)
    session.flush()
    return campaign.id


def _message(key: str, contact_id: int | None, appointment_id: int | None = None) -> dict[str, Any]:
    return {
        "idempotency_key": key, "contact_id": contact_id, "appointment_id": appointment_id,
        "channel": "sms", "category": "care", "kind": "system", "context": {},
        "body_override": "Test message from the clinic.", "due_at": utcnow(), "state": "scheduled",
        "attempts": outbox_rows.INITIAL_ATTEMPTS, "max_attempts": outbox_rows.MAX_ATTEMPTS,
    }


def _enrollment(contact_id: int, campaign_id: int) -> dict[str, Any]:
    return {
        "contact_id": contact_id, "campaign_id": campaign_id, "started_at": utcnow(), "stopped_channels": [],
    }


def _count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_rows_that_name_a_missing_parent_are_refused_and_nothing_of_the_statement_is_written(
    session: Session,
) -> None:
    contact, other = _contact(session), _contact(session)
    appointment, campaign = _appointment(session, contact), _campaign(session)
    session.commit()
    refused: list[tuple[Any, list[dict[str, Any]]]] = [
        # One bad row among good ones that name the same parents several times: a check
        # that compared counts of rows with counts of parents would let it through.
        (Message, [_message("a", contact), _message("b", contact), _message("c", MISSING)]),
        (Message, [_message("d", contact, appointment), _message("e", other, MISSING)]),
        (Enrollment, [_enrollment(contact, campaign), _enrollment(MISSING, campaign)]),
        (Enrollment, [_enrollment(contact, campaign), _enrollment(other, MISSING)]),
    ]
    for model, rows in refused:
        with pytest.raises(IntegrityError):
            session.execute(insert(model), rows)
        session.rollback()
        assert _count(session, model) == 0, f"a refused {model.__name__} insert wrote rows"

    session.execute(
        insert(Message), [_message("f", contact, appointment), _message("g", other), _message("h", None)]
    )
    session.execute(insert(Enrollment), [_enrollment(contact, campaign), _enrollment(other, campaign)])
    session.commit()
    assert (_count(session, Message), _count(session, Enrollment)) == (3, 2)


def test_a_reference_cannot_be_changed_to_a_missing_parent(session: Session) -> None:
    contact, campaign = _contact(session), _campaign(session)
    appointment = _appointment(session, contact)
    session.execute(insert(Message), [_message("a", contact)])
    session.execute(insert(Enrollment), [_enrollment(contact, campaign)])
    session.commit()
    for change in (
        update(Message).values(contact_id=MISSING),
        update(Message).values(appointment_id=MISSING),
        update(Enrollment).values(contact_id=MISSING),
        update(Enrollment).values(campaign_id=MISSING),
    ):
        with pytest.raises(IntegrityError):
            session.execute(change)
        session.rollback()
    session.execute(update(Message).values(appointment_id=appointment))
    session.commit()
    assert session.scalar(select(Message.appointment_id)) == appointment


def test_deleting_a_parent_deletes_what_names_it_and_nothing_else(session: Session) -> None:
    kept, gone = _contact(session), _contact(session)
    campaign, other_campaign = _campaign(session), _campaign(session, "other")
    kept_visit, gone_visit = _appointment(session, kept), _appointment(session, kept)
    session.execute(
        insert(Message),
        [_message("kept", kept), _message("kept-visit", kept, kept_visit),
         _message("gone-visit", kept, gone_visit), _message("gone-1", gone), _message("gone-2", gone)],
    )
    session.execute(
        insert(Enrollment),
        [_enrollment(kept, campaign), _enrollment(kept, other_campaign), _enrollment(gone, campaign)],
    )
    gone_message = session.scalar(select(Message.id).where(Message.idempotency_key == "gone-1"))
    session.add(MessageAttempt(message_id=gone_message, number=1))
    session.add(MessageEvent(message_id=gone_message, status="sent"))
    session.commit()

    session.execute(delete(Contact).where(Contact.id == gone))
    session.execute(delete(Appointment).where(Appointment.id == gone_visit))
    session.execute(delete(Campaign).where(Campaign.id == other_campaign))
    session.commit()

    assert sorted(session.scalars(select(Message.idempotency_key))) == ["kept", "kept-visit"]
    assert session.execute(select(Enrollment.contact_id, Enrollment.campaign_id)).all() == [(kept, campaign)]
    assert (_count(session, MessageAttempt), _count(session, MessageEvent)) == (0, 0)


def test_a_parent_id_never_changes(session: Session) -> None:
    contact, campaign = _contact(session), _campaign(session)
    appointment = _appointment(session, contact)
    session.commit()
    for model, row in ((Contact, contact), (Appointment, appointment), (Campaign, campaign)):
        with pytest.raises(IntegrityError):
            session.execute(update(model).where(model.id == row).values(id=MISSING))
        session.rollback()


def test_a_copy_is_checked_like_an_insert(pg: tuple[Engine, sessionmaker[Session]]) -> None:
    """COPY is how enrollment writes on PostgreSQL, and what the statement-level check is for."""
    engine, session_factory = pg
    with session_factory() as session:
        contact, campaign = _contact(session), _campaign(session)
        session.commit()
    columns = "contact_id, campaign_id, state, started_at, created_at, updated_at, stopped_channels"
    statement = f"COPY enrollments ({columns}) FROM STDIN"
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None
        now = utcnow()
        for parents, written in (([(contact, campaign), (MISSING, campaign)], 0), ([(contact, campaign)], 1)):
            try:
                with driver.cursor() as cursor, cursor.copy(statement) as copy:
                    for contact_id, campaign_id in parents:
                        copy.write_row((contact_id, campaign_id, "active", now, now, now, "[]"))
                driver.commit()
            except Exception as error:
                driver.rollback()
                assert getattr(error, "sqlstate", None) == "23503", error  # foreign_key_violation
            with session_factory() as session:
                assert _count(session, Enrollment) == written
    finally:
        raw.close()


def test_truncating_a_parent_deletes_only_what_named_it(pg: tuple[Engine, sessionmaker[Session]]) -> None:
    _, session_factory = pg
    with session_factory() as session:
        contact = _contact(session)
        appointment = _appointment(session, contact)
        session.execute(
            insert(Message), [_message("visit", contact, appointment), _message("series", contact)]
        )
        session.commit()
        session.execute(text("TRUNCATE appointments"))
        session.commit()
        assert list(session.scalars(select(Message.idempotency_key))) == ["series"]
        session.execute(text("TRUNCATE contacts CASCADE"))
        session.commit()
        assert _count(session, Message) == 0


def _in_thread(work: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # handed to the test thread
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_a_delete_waits_for_a_writer_that_named_the_contact_then_takes_its_rows(
    pg: tuple[Engine, sessionmaker[Session]],
) -> None:
    engine, session_factory = pg
    with session_factory() as setup:
        contact = _contact(setup)
        setup.commit()
    with session_factory() as writer:
        writer.execute(insert(Message), [_message("in-flight", contact)])

        def delete_contact() -> None:
            with session_factory() as deleter:
                deleter.execute(delete(Contact).where(Contact.id == contact))
                deleter.commit()

        thread, errors = _in_thread(delete_contact)
        wait_for(lambda: waiting_for_a_lock(engine), what="the delete to wait for the writer's lock")
        writer.commit()
    thread.join(timeout=30)
    assert not thread.is_alive() and not errors, errors
    with session_factory() as session:
        assert _count(session, Message) == 0, "the committed message outlived its contact"


def test_a_writer_that_waited_for_a_delete_is_refused(
    pg: tuple[Engine, sessionmaker[Session]],
) -> None:
    engine, session_factory = pg
    with session_factory() as setup:
        contact, campaign = _contact(setup), _campaign(setup)
        setup.commit()
    with session_factory() as deleter:
        deleter.execute(delete(Contact).where(Contact.id == contact))

        def enroll() -> None:
            with session_factory() as writer:
                writer.execute(insert(Enrollment), [_enrollment(contact, campaign)])
                writer.commit()

        thread, errors = _in_thread(enroll)
        wait_for(lambda: waiting_for_a_lock(engine), what="the writer to wait for the delete")
        deleter.commit()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], IntegrityError), errors
    assert getattr(errors[0].orig, "sqlstate", None) == "23503"  # foreign_key_violation
    with session_factory() as session:
        assert _count(session, Enrollment) == 0
