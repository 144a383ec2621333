"""Demo data for `make run`: a few fictional patients, the education campaign, one booked visit,
and a conversation played through the fake phones once everything runs (``converse``).

Safe to run again: contacts are matched by external id, enrollment and booking are
idempotent. Phone numbers are in the 555-01xx range reserved for fiction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from outreach import appointments, timefmt
from outreach.campaigns import sync
from outreach.campaigns.enroll import enroll
from outreach.closures import campaign_policy, load_closures
from outreach.config import Settings
from outreach.contacts import consent
from outreach.contacts.service import ContactInput, add_contact
from outreach.db import transaction
from outreach.delivery.conversation import last_inbound_at
from outreach.models import (
    Appointment,
    Channel,
    ConsentSource,
    Contact,
    InboxItem,
    Message,
    MessageState,
)
from outreach.replies import inbox

EDUCATION_CAMPAIGN = "ketamine-education"
# The first demo patient's external id: present when `outreach demo seed` has run.
FIRST_DEMO_PATIENT = "DEMO-1"
DEMO_VISIT = "DEMO-VISIT-1"
DEMO_PATIENTS = (
    ContactInput("Avery", "Demo", "+19255550101", "avery@example.org", external_id="DEMO-1", tags=["demo"]),
    ContactInput("Blake", "Demo", "+19255550102", "blake@example.org", external_id="DEMO-2", tags=["demo"]),
    ContactInput(
        "Casey",
        "Demo",
        "+12125550103",
        "casey@example.org",
        "America/New_York",
        external_id="DEMO-3",
        tags=["demo"],
    ),
)
CONSENT_WORDING = "Demo data: consent recorded by the demo seed, not by a patient."


@dataclass(frozen=True)
class DemoReport:
    contacts: list[int]
    enrolled: list[int]
    appointment_id: int


def seed(session: Session, settings: Settings, now: datetime) -> DemoReport:
    sync.sync(session, settings, now)
    ids = [_ensure_patient(session, settings, patient, now) for patient in DEMO_PATIENTS]
    report = enroll(session, settings, EDUCATION_CAMPAIGN, ids[:2], now=now)
    visit = session.scalar(select(Appointment).where(Appointment.external_id == DEMO_VISIT))
    if visit is None:
        # Four days out, so the preparation email (three days before) is still ahead.
        day = now.astimezone(settings.clinic_zone).date() + timedelta(days=4)
        starts = datetime.combine(day, time(10, 0), tzinfo=settings.clinic_zone)
        visit = appointments.book(
            session,
            settings,
            contact_id=ids[0],
            starts_at=starts,
            type="infusion",
            external_id=DEMO_VISIT,
            now=now,
        ).appointment
    return DemoReport(ids, report.enrolled, visit.id)


def is_seeded(session: Session) -> bool:
    return session.scalar(select(Contact.id).where(Contact.external_id == FIRST_DEMO_PATIENT)) is not None


def _ensure_patient(session: Session, settings: Settings, patient: ContactInput, now: datetime) -> int:
    existing = session.scalar(select(Contact.id).where(Contact.external_id == patient.external_id))
    if existing is not None:
        return existing
    contact = add_contact(session, patient, clinic_timezone=settings.clinic_timezone, now=now)
    evidence = consent.Evidence(
        source=ConsentSource.STAFF, wording=CONSENT_WORDING, recorded_by="demo seed", occurred_at=now
    )
    for channel in (Channel.SMS, Channel.EMAIL):
        consent.grant(session, contact.id, channel, ["care", "education"], evidence)
    return contact.id


# What the demo's patients text once `outreach run` is up, so a newcomer sees a whole
# conversation at any hour: each is a reply to the patient's own text, which may go at night.
DEMO_QUESTION = ("+19255550102", "Hi, is there parking at the clinic?")
DEMO_CRISIS = ("+12125550103", "Demo text: I can't go on")
DEMO_STAFF = "Front desk (demo)"
DEMO_STAFF_REPLY = "Yes - free parking behind the building. Reply here if you need anything else."
# How long the worker may take to file the demo question before the staff reply gives up.
FILED_WITHIN = 60.0


def held_note(session: Session, settings: Settings, now: datetime) -> str:
    """One line for the start-up banner and the sandbox pages: what is held and until when."""
    zone = settings.clinic_zone
    policy = campaign_policy(settings, None, load_closures(session))
    if not policy.allows(now, zone):
        opening = policy.next_opening(now, zone)
        return (
            f"Automated messages are held: next message {timefmt.clock(opening, zone)} — quiet hours "
            f"({timefmt.local(opening, zone)}). Replies to a patient's own text go at any hour."
        )
    upcoming = session.scalar(
        select(func.min(Message.due_at)).where(Message.state == MessageState.SCHEDULED, Message.due_at > now)
    )
    if upcoming is None:
        return "Nothing is held: messages go out as they fall due."
    return f"Inside the sending window: next scheduled message {timefmt.local(upcoming, zone)}."


def converse(
    factory: sessionmaker[Session],
    settings: Settings,
    text_the_clinic: Callable[[str, str], object],
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
) -> bool:
    """Play the demo's patient texts through the fake phones, then answer as staff.

    Once per database: False when the demo question was already asked (a second `make run`).
    ``text_the_clinic(number, body)`` is the sandbox's fake phone replying.
    """
    phone, question = DEMO_QUESTION
    with transaction(factory) as session:
        if last_inbound_at(session, phone) is not None:
            return False
    text_the_clinic(phone, question)
    text_the_clinic(*DEMO_CRISIS)
    item_id = _wait_for_conversation(factory, phone, clock, sleep)
    if item_id is None:
        return False
    with transaction(factory) as session:
        inbox.reply(session, settings, item_id, DEMO_STAFF_REPLY, DEMO_STAFF, clock())
    return True


def _wait_for_conversation(
    factory: sessionmaker[Session], phone: str, clock: Callable[[], datetime], sleep: Callable[[float], None]
) -> int | None:
    deadline = clock() + timedelta(seconds=FILED_WITHIN)
    while clock() < deadline:
        with transaction(factory) as session:
            item_id = session.scalar(
                select(InboxItem.id)
                .join(Contact, Contact.id == InboxItem.contact_id)
                .where(Contact.phone == phone, InboxItem.kind == "message")
            )
        if item_id is not None:
            return item_id
        sleep(0.5)
    return None
