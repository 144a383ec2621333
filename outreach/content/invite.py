"""The .ics attachment for appointment emails: a neutral title, nothing clinical.

The event's UID is stable per appointment and its SEQUENCE is the appointment's version, so
a calendar that imported an earlier invite updates it after a reschedule.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from outreach.channels import Attachment
from outreach.config import Settings
from outreach.models import Appointment, Message

ICS_TYPE = "text/calendar; method=PUBLISH; charset=utf-8"


def attachments_for(session: Session, settings: Settings, message: Message) -> tuple[Attachment, ...]:
    """An invite when the message asks for one (``context["attach_ics"]``) and has a visit."""
    if not (message.context or {}).get("attach_ics") or message.appointment_id is None:
        return ()
    appointment = session.get(Appointment, message.appointment_id)
    if appointment is None:
        return ()
    return (Attachment("appointment.ics", ICS_TYPE, invite(settings, appointment).encode()),)


def invite(settings: Settings, appointment: Appointment, now: datetime | None = None) -> str:
    start = appointment.starts_at
    end = start + timedelta(minutes=appointment.duration_minutes)
    domain = settings.email_from.rsplit("@", 1)[-1].strip(" >") or "outreach.local"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Clinic Outreach//EN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:appointment-{appointment.id}@{domain}",
        f"SEQUENCE:{appointment.version}",
        f"DTSTAMP:{_utc(now or appointment.updated_at)}",
        f"DTSTART:{_utc(start)}",
        f"DTEND:{_utc(end)}",
        # Neutral on purpose: calendars are seen by family and colleagues.
        f"SUMMARY:{_escape('Appointment - ' + settings.clinic_display_name)}",
        f"LOCATION:{_escape(appointment.location or settings.clinic_address)}",
        f"DESCRIPTION:{_escape('Questions or changes: call ' + settings.clinic_phone)}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "\r\n".join(lines) + "\r\n"


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")
