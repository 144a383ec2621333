"""A reschedule racing the send of the old day-before reminder (PostgreSQL, two sessions).

The promise: once the reschedule has committed, the patient never gets a reminder with the
old time. The send path holds the contact lock across the provider call, and the reschedule
takes the same lock, so there are two interleavings to prove:

* the reschedule arrives while the provider call is in flight: it waits for the lock, so the
  old reminder is accepted *before* the reschedule commits (allowed), and the new reminders
  follow;
* the reschedule commits between the sender's two transactions (after ``sending`` was
  recorded, before the provider call): the call must not happen.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from outreach import appointments
from outreach.channels import Outgoing
from outreach.config import Settings, load_settings
from outreach.db import make_engine, make_session_factory
from outreach.delivery.claim import claim_due
from outreach.delivery.send import NoLimit, Services, send_message
from outreach.models import Message, MessageState
from tests.support.appointments import la
from tests.support.factories import make_contact
from tests.support.fakes import FakeClock, FakeProvider, LimiterThatRuns
from tests.support.waiting import wait_for, waiting_for_a_lock

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
BOOKED_AT = la(2025, 6, 4, 12, 0)
VISIT = la(2025, 6, 10, 10, 0)
REMINDER_DUE = la(2025, 6, 9, 10, 0)  # the day-before request, inside the window
NEW_VISIT = la(2025, 6, 12, 15, 0)


@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[Settings, sessionmaker[Session], Engine]]:
    engine = make_engine(pg_url)
    yield load_settings(database_url=pg_url, templates_dir=TEMPLATES), make_session_factory(engine), engine
    engine.dispose()


@dataclass
class Timeline:
    """What happened, in order, across threads."""

    events: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, event: str) -> None:
        with self.lock:
            self.events.append(event)


def _book_and_claim(settings: Settings, factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory.begin() as session:
        contact = make_contact(session)
        change = appointments.book(
            session, settings, contact_id=contact.id, starts_at=VISIT, type="infusion", now=BOOKED_AT
        )
        appointment_id = change.appointment.id
        # Everything before the day-before request has gone out already.
        for message in session.scalars(select(Message).where(Message.appointment_id == appointment_id)):
            if message.due_at < REMINDER_DUE:
                message.state = str(MessageState.SENT)
                message.sent_at = message.due_at
    with factory.begin() as session:
        claimed = claim_due(session, REMINDER_DUE, batch_size=10)
        key = f"appointment:{appointment_id}:reminder:confirm_request:v1"
        message_id = session.scalars(select(Message.id).where(Message.idempotency_key == key)).one()
    assert claimed == [message_id]
    return appointment_id, message_id


def _reschedule(
    settings: Settings, factory: sessionmaker[Session], appointment_id: int, timeline: Timeline
) -> None:
    with factory.begin() as session:
        appointments.reschedule(
            session, settings, appointment_id, NEW_VISIT, now=REMINDER_DUE + timedelta(seconds=1)
        )
    timeline.add("reschedule committed")


def _services(
    settings: Settings, factory: sessionmaker[Session], provider: FakeProvider, limiter: object
) -> Services:
    return Services(
        settings=settings,
        session_factory=factory,
        providers={"sms": provider, "email": FakeProvider(channel="email", can_reconcile=False)},
        limiter=limiter,  # type: ignore[arg-type]
        clock=FakeClock(REMINDER_DUE + timedelta(seconds=2)),
        sleep=lambda _s: None,
    )


def test_reschedule_during_the_provider_call_waits_and_the_old_reminder_predates_it(
    pg: tuple[Settings, sessionmaker[Session], Engine],
) -> None:
    settings, factory, engine = pg
    appointment_id, message_id = _book_and_claim(settings, factory)
    timeline = Timeline()
    in_call, release = threading.Event(), threading.Event()

    def block_mid_call(outgoing: Outgoing) -> None:
        timeline.add(f"provider called for message {outgoing.message_id}")
        in_call.set()
        assert release.wait(30), "the test never released the provider"

    provider = FakeProvider(before_send=block_mid_call)
    services = _services(settings, factory, provider, NoLimit())
    sender = threading.Thread(target=send_message, args=(services, message_id))
    sender.start()
    assert in_call.wait(30)
    mover = threading.Thread(target=_reschedule, args=(settings, factory, appointment_id, timeline))
    mover.start()
    wait_for(lambda: waiting_for_a_lock(engine), what="the reschedule to wait for the contact lock")
    assert "reschedule committed" not in timeline.events
    timeline.add("provider returned")
    release.set()
    sender.join(30)
    mover.join(30)
    assert timeline.events == [
        f"provider called for message {message_id}",
        "provider returned",
        "reschedule committed",
    ]
    with factory() as session:
        old = session.get(Message, message_id)
        assert old is not None and old.state == MessageState.SENT
        new = session.scalars(
            select(Message).where(Message.appointment_id == appointment_id, Message.appointment_version == 2)
        ).all()
        assert {m.reminder_key for m in new} >= {"rescheduled", "confirm_request", "day_of"}


def test_reschedule_committed_between_prepare_and_call_stops_the_old_reminder(
    pg: tuple[Settings, sessionmaker[Session], Engine],
) -> None:
    settings, factory, _engine = pg
    appointment_id, message_id = _book_and_claim(settings, factory)
    timeline = Timeline()

    def reschedule_in_another_session() -> None:
        worker = threading.Thread(target=_reschedule, args=(settings, factory, appointment_id, timeline))
        worker.start()
        worker.join(30)

    provider = FakeProvider(before_send=lambda o: timeline.add(f"provider called for message {o.message_id}"))
    limiter = LimiterThatRuns(reschedule_in_another_session)
    state = send_message(_services(settings, factory, provider, limiter), message_id)
    assert timeline.events[0] == "reschedule committed"
    assert provider.sent == [], "the old time reached the patient after the reschedule committed"
    assert state == MessageState.CANCELLED
