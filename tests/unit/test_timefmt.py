"""Instants as staff read them: the clinic's wall clock, the patient's where it differs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from outreach.timefmt import clock, local, long_date, staff_clock, staff_time

PACIFIC = ZoneInfo("America/Los_Angeles")
EASTERN = ZoneInfo("America/New_York")
ARIZONA = ZoneInfo("America/Phoenix")


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 6, 10, 10, 0, tzinfo=UTC), "Wed 10 Jun 2026, 03:00 Pacific"),
        (datetime(2026, 12, 24, 16, 30, tzinfo=UTC), "Thu 24 Dec 2026, 08:30 Pacific"),
        # The night DST starts: 01:59 PST is followed by 03:00 PDT.
        (datetime(2026, 3, 8, 9, 59, tzinfo=UTC), "Sun 8 Mar 2026, 01:59 Pacific"),
        (datetime(2026, 3, 8, 10, 0, tzinfo=UTC), "Sun 8 Mar 2026, 03:00 Pacific"),
        # SQLite can hand back naive values; they are stored as UTC.
        (datetime(2026, 6, 10, 10, 0), "Wed 10 Jun 2026, 03:00 Pacific"),
    ],
)
def test_an_instant_reads_on_the_clinics_wall_clock_with_the_date_written_out(
    at: datetime, expected: str
) -> None:
    assert local(at, PACIFIC) == expected


def test_the_patients_time_follows_when_their_clock_differs() -> None:
    at = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)
    assert staff_time(at, PACIFIC, EASTERN) == (
        "Wed 10 Jun 2026, 09:00 Pacific (Wed 10 Jun 2026, 12:00 Eastern for the patient)"
    )
    assert staff_time(at, PACIFIC, PACIFIC) == "Wed 10 Jun 2026, 09:00 Pacific"


def test_arizona_shows_only_while_its_clock_differs_from_the_clinics() -> None:
    summer = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # Arizona = Pacific daylight time
    winter = datetime(2026, 12, 10, 17, 0, tzinfo=UTC)
    assert "for the patient" not in staff_time(summer, PACIFIC, ARIZONA)
    assert staff_time(winter, PACIFIC, ARIZONA).endswith("(Thu 10 Dec 2026, 10:00 Arizona for the patient)")


def test_no_instant_is_an_empty_cell_and_a_clock_is_the_time_of_day() -> None:
    assert staff_time(None, PACIFIC) == ""
    assert clock(datetime(2026, 6, 10, 15, 0, tzinfo=UTC), PACIFIC) == "08:00 Pacific"


def test_a_patient_zone_stored_as_text_reads_like_a_zone_and_blank_means_unknown() -> None:
    at = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)
    assert staff_time(at, PACIFIC, "America/New_York") == staff_time(at, PACIFIC, EASTERN)
    assert staff_time(at, PACIFIC, "") == "Wed 10 Jun 2026, 09:00 Pacific"


def test_a_days_list_shows_the_time_of_day_with_the_patients_where_it_differs() -> None:
    at = datetime(2026, 6, 12, 16, 30, tzinfo=UTC)
    assert staff_clock(at, PACIFIC, "America/New_York") == "09:30 Pacific (12:30 Eastern for the patient)"
    assert staff_clock(at, PACIFIC, PACIFIC) == "09:30 Pacific"


def test_a_heading_writes_the_day_out_in_full() -> None:
    assert long_date(date(2026, 6, 12)) == "Friday 12 June 2026"
