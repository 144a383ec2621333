"""Instants as staff read them: the clinic's wall clock, dates written out, the zone named.

One helper for the CLI, the sandbox pages and the web pages, so staff see the same words
everywhere. Machine output (``--json``, the API) keeps ISO-8601 with offsets instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
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


def staff_time(at: datetime | None, clinic: ZoneInfo, patient: ZoneInfo | None = None) -> str:
    """The clinic's local time, and the patient's after it when their wall clock differs."""
    if at is None:
        return ""
    text = local(at, clinic)
    if patient is not None and _offset(at, patient) != _offset(at, clinic):
        text += f" ({local(at, patient)} for the patient)"
    return text


def _aware(at: datetime) -> datetime:
    # SQLite hands back naive values for some columns; they are stored as UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _offset(at: datetime, zone: ZoneInfo) -> object:
    return _aware(at).astimezone(zone).utcoffset()
