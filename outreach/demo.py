"""Demo data for `make run`: a few fictional patients, the education campaign, one booked visit.

Safe to run again: contacts are matched by external id, enrollment and booking are
idempotent. Phone numbers are in the 555-01xx range reserved for fiction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import appointments
from outreach.campaigns import sync
from outreach.campaigns.enroll import enroll
from outreach.config import Settings
from outreach.contacts import consent
from outreach.contacts.service import ContactInput, add_contact
from outreach.models import Appointment, Channel, ConsentSource, Contact

EDUCATION_CAMPAIGN = "ketamine-education"
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
    ids = [_ensure_patient(session, settings, patient) for patient in DEMO_PATIENTS]
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


def _ensure_patient(session: Session, settings: Settings, patient: ContactInput) -> int:
    existing = session.scalar(select(Contact.id).where(Contact.external_id == patient.external_id))
    if existing is not None:
        return existing
    contact = add_contact(session, patient, clinic_timezone=settings.clinic_timezone)
    evidence = consent.Evidence(source=ConsentSource.STAFF, wording=CONSENT_WORDING, recorded_by="demo seed")
    for channel in (Channel.SMS, Channel.EMAIL):
        consent.grant(session, contact.id, channel, ["care", "education"], evidence)
    return contact.id
