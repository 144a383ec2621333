"""The .ics invite, read back by a real iCalendar parser (what Google and Apple calendars do)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar

from outreach.config import load_settings
from outreach.content.invite import invite
from outreach.models import Appointment

STAMP = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _appointment(**overrides: object) -> Appointment:
    values: dict[str, object] = {
        "id": 42,
        "version": 3,
        # 10:00 in Walnut Creek on the day DST starts.
        "starts_at": datetime(2026, 3, 8, 17, 0, tzinfo=UTC),
        "timezone": "America/Los_Angeles",
        "duration_minutes": 90,
        "location": "100 Main Street, Suite 2; Walnut Creek, CA",
        "updated_at": STAMP,
    }
    return Appointment(**{**values, **overrides})


def test_invite_reads_back_with_the_visits_zone_and_times() -> None:
    settings = load_settings(clinic_display_name="Bay Area Wellness")
    calendar = Calendar.from_ical(invite(settings, _appointment(), now=STAMP))
    event = calendar.walk("VEVENT")[0]
    start = event.decoded("DTSTART")
    assert start == datetime(2026, 3, 8, 10, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    assert event["DTSTART"].params["TZID"] == "America/Los_Angeles"
    assert event.decoded("DTEND") - start == (datetime(2026, 1, 1, 1, 30) - datetime(2026, 1, 1))
    assert [tz["TZID"] for tz in calendar.walk("VTIMEZONE")] == ["America/Los_Angeles"]
    assert str(event["UID"]) == "appointment-42@clinic.example.org"
    assert event.decoded("SEQUENCE") == 3
    assert str(event["LOCATION"]) == "100 Main Street, Suite 2; Walnut Creek, CA"
    assert str(event["SUMMARY"]) == "Appointment - Bay Area Wellness"


def test_long_lines_are_folded_at_75_octets_and_unfold_intact() -> None:
    location = "Building " + "é" * 120 + ", floor 3"
    text = invite(load_settings(), _appointment(location=location), now=STAMP)
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    event = Calendar.from_ical(text).walk("VEVENT")[0]
    assert str(event["LOCATION"]) == location


def test_the_title_stays_neutral() -> None:
    text = invite(load_settings(), _appointment(), now=STAMP).lower()
    assert "ketamine" not in text and "infusion" not in text
