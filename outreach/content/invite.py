"""The .ics attachment for appointment emails: a neutral title, nothing clinical.

Built with ``icalendar`` (RFC 5545: escaping, line folding at 75 octets, a VTIMEZONE for the
visit's zone). Times carry the visit's own zone (``DTSTART;TZID=America/Los_Angeles``), so a
calendar in another zone still shows the right moment and a DST change moves nothing. The
event's UID is stable per appointment and its SEQUENCE is the appointment's version, so a
calendar that imported an earlier invite updates it after a reschedule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event
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
    zone = ZoneInfo(appointment.timezone)
    start = appointment.starts_at.astimezone(zone)
    end = start + timedelta(minutes=appointment.duration_minutes)
    domain = settings.email_from.rsplit("@", 1)[-1].strip(" >") or "outreach.local"
    event = Event()
    event.add("uid", f"appointment-{appointment.id}@{domain}")
    event.add("sequence", appointment.version)
    event.add("dtstamp", (now or appointment.updated_at).astimezone(UTC))
    event.add("dtstart", start)
    event.add("dtend", end)
    # Neutral on purpose: calendars are seen by family and colleagues.
    event.add("summary", f"Appointment - {settings.clinic_display_name}")
    event.add("location", appointment.location or settings.clinic_address)
    event.add("description", f"Questions or changes: call {settings.clinic_phone}")
    calendar = Calendar()
    calendar.add("prodid", "-//Clinic Outreach//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    calendar.add_component(event)
    # Only the zone's rules around the visit: a full 1970-2038 history would be most of the file.
    calendar.add_missing_timezones(
        first_date=(start - timedelta(days=366)).date(), last_date=(end + timedelta(days=366)).date()
    )
    return str(calendar.to_ical().decode("utf-8"))
