"""The process clock OUTREACH_CLOCK fixes, and how `outreach run` makes its children agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from outreach.clock import child_environment, fixed_start, from_settings, offset
from outreach.config import load_settings

NIGHT = datetime(2026, 6, 10, 3, 0, tzinfo=UTC) + timedelta(hours=7)  # 03:00 Pacific
REAL = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)


def test_a_fixed_clock_starts_at_the_instant_and_runs_on_in_real_time() -> None:
    ticks = iter([100.0, 100.0, 190.5])
    clock = fixed_start(datetime.fromisoformat("2026-06-10T03:00:00-07:00"), lambda: next(ticks))
    assert clock() == NIGHT
    assert clock() == NIGHT + timedelta(seconds=90.5)


def test_children_of_outreach_run_read_the_parents_time_however_late_they_start() -> None:
    parent_now = NIGHT + timedelta(seconds=42)
    env = child_environment(
        {"OUTREACH_CLOCK": "2026-06-10T03:00:00-07:00", "PATH": "/bin"}, lambda: parent_now, lambda: REAL
    )
    assert "OUTREACH_CLOCK" not in env and env["PATH"] == "/bin"
    # A child reads the wall clock plus the offset: at the same real instant, the parent's time.
    assert REAL + timedelta(seconds=float(env["OUTREACH_CLOCK_OFFSET_SECONDS"])) == parent_now
    assert load_settings(clock_offset_seconds=12.5).clock_offset_seconds == 12.5


def test_an_offset_clock_is_the_wall_clock_moved() -> None:
    assert offset(timedelta(hours=-13), lambda: REAL)() == REAL - timedelta(hours=13)


def test_without_a_setting_the_clock_is_the_wall_clock_and_children_get_no_clock_setting() -> None:
    from outreach.models.base import utcnow

    assert from_settings(load_settings()) is utcnow
    assert child_environment({"PATH": "/bin"}, utcnow) == {"PATH": "/bin"}
