"""Instants as staff read them: the clinic's wall clock, dates written out, the zone named.

One helper for the CLI, the sandbox pages and the web pages, so staff see the same words
everywhere. Machine output (``--json``, the API) keeps ISO-8601 with offsets instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

# Short names for the zones a US clinic meets; others show their abbreviation ("EDT").
ZONE_NAMES = {
    "America/Los_Angeles": "Pacific",
    "America/Denver": "Mountain",
    "America/Phoenix": "Arizona",
    "America/Chicago": "Central",
    "America/New_York": "Eastern",
    "America/Anchorage": "Alaska",
    "Pacific/Honolulu": "Hawaii",
}


def zone_name(zone: ZoneInfo) -> str:
    return ZONE_NAMES.get(zone.key, zone.key)


def local(at: datetime, zone: ZoneInfo) -> str:
    """``Wed 10 Jun 2026, 03:00 Pacific``: an instant on the given zone's wall clock."""
    moment = _aware(at).astimezone(zone)
    return f"{moment:%a} {moment.day} {moment:%b %Y, %H:%M} {zone_name(zone)}"


def clock(at: datetime, zone: ZoneInfo) -> str:
    """``08:00 Pacific``: the time of day only, for "next message at ..." lines."""
    return f"{_aware(at).astimezone(zone):%H:%M} {zone_name(zone)}"


def long_date(value: date) -> str:
    """``Wednesday 10 June 2026``: a calendar day written out, for headings."""
    return f"{value:%A} {value.day} {value:%B %Y}"


def staff_time(at: datetime | None, clinic: ZoneInfo, patient: ZoneInfo | str | None = None) -> str:
    """The clinic's local time, and the patient's after it when their wall clock differs.

    ``patient`` may be a zone key as stored on a contact or appointment ("" or None: unknown).
    """
    return _both(local, at, clinic, patient)


def staff_clock(at: datetime | None, clinic: ZoneInfo, patient: ZoneInfo | str | None = None) -> str:
    """``staff_time`` for the time of day only, where the day is already shown (a day's list)."""
    return _both(clock, at, clinic, patient)


def _both(
    written: Callable[[datetime, ZoneInfo], str],
    at: datetime | None,
    clinic: ZoneInfo,
    patient: ZoneInfo | str | None,
) -> str:
    if at is None:
        return ""
    if isinstance(patient, str):
        patient = ZoneInfo(patient) if patient else None
    text = written(at, clinic)
    if patient is not None and _offset(at, patient) != _offset(at, clinic):
        text += f" ({written(at, patient)} for the patient)"
    return text


def _aware(at: datetime) -> datetime:
    # SQLite hands back naive values for some columns; they are stored as UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _offset(at: datetime, zone: ZoneInfo) -> object:
    return _aware(at).astimezone(zone).utcoffset()
