"""Times and states as staff read them: the clinic's zone, dates written out, plain words."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo


def when(at: datetime | None, zone: ZoneInfo) -> str:
    """'Wed 10 June 2026, 11:00 AM PDT' in ``zone``; an empty string for no time."""
    if at is None:
        return ""
    local = at.astimezone(zone)
    hour = local.strftime("%I:%M %p").lstrip("0")
    return f"{local:%a} {local.day} {local:%B %Y}, {hour} {local.tzname()}"


def when_both(at: datetime | None, clinic: ZoneInfo, patient_zone: str | None) -> str:
    """Clinic time, plus the patient's own where their zone differs."""
    text = when(at, clinic)
    if at is None or not patient_zone or patient_zone == clinic.key:
        return text
    theirs = at.astimezone(ZoneInfo(patient_zone))
    hour = theirs.strftime("%I:%M %p").lstrip("0")
    return f"{text} ({hour} {theirs.tzname()} for the patient)"


def day_title(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


STATE_WORDS = {
    "scheduled": "scheduled",
    "queued": "being sent",
    "sending": "being sent",
    "sent": "sent, awaiting delivery report",
    "delivered": "delivered",
    "undelivered": "not delivered",
    "failed": "failed",
    "cancelled": "cancelled",
    "skipped": "not sent",
    "expired": "too late to send",
    "unknown": "outcome unknown, being checked",
}


def state_words(state: str, reason: str | None = None) -> str:
    words = STATE_WORDS.get(state, state.replace("_", " "))
    return f"{words}: {reason}" if reason else words
