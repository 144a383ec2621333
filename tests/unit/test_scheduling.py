"""Scheduling rules as tables, no database: DST edges, zones without DST, windows, closures, caps."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from outreach.scheduling import (
    FrequencyCap,
    NoOpening,
    SendPolicy,
    StepTiming,
    Window,
    day_at,
    is_allowed,
    next_allowed,
    next_capped,
    parse_clock,
    parse_duration,
    plan_steps,
    step_timing,
)

LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
PHX = ZoneInfo("America/Phoenix")
HNL = ZoneInfo("Pacific/Honolulu")
DEFAULT = Window(time(8), time(20))
NARROW = DEFAULT.narrowed_to(Window(time(9), time(18)))
CAP = FrequencyCap(per_day=1, per_week=3)


def local(zone: ZoneInfo, text: str, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# "day N at HH:MM" keeps its wall-clock time across DST changes; (anchor, zone, day, at) -> expected local.
WALL_CLOCK = [
    # Spring forward: LA 2026-03-08 02:00 -> 03:00. Anchor before, step after: still 10:00 local.
    ("2026-03-06 09:00", LA, 3, "10:00", "2026-03-09 10:00", "2026-03-09T17:00:00+00:00"),
    ("2026-03-06 09:00", NY, 3, "10:00", "2026-03-09 10:00", "2026-03-09T14:00:00+00:00"),
    # Fall back: LA 2026-11-01 02:00 -> 01:00.
    ("2026-10-30 09:00", LA, 3, "10:00", "2026-11-02 10:00", "2026-11-02T18:00:00+00:00"),
    ("2026-10-30 09:00", NY, 3, "10:00", "2026-11-02 10:00", "2026-11-02T15:00:00+00:00"),
    # Zones without DST: the UTC offset never changes.
    ("2026-03-06 09:00", PHX, 3, "10:00", "2026-03-09 10:00", "2026-03-09T17:00:00+00:00"),
    ("2026-10-30 09:00", HNL, 3, "10:00", "2026-11-02 10:00", "2026-11-02T20:00:00+00:00"),
    # A time inside the spring-forward gap moves forward by the gap: 02:30 -> 03:30 PDT.
    ("2026-03-07 09:00", LA, 1, "02:30", "2026-03-08 03:30", "2026-03-08T10:30:00+00:00"),
    # A time inside the fall-back fold means its first occurrence (PDT, fold=0).
    ("2026-10-31 09:00", LA, 1, "01:30", "2026-11-01 01:30", "2026-11-01T08:30:00+00:00"),
    ("2026-10-31 09:00", NY, 1, "01:30", "2026-11-01 01:30", "2026-11-01T05:30:00+00:00"),
]


@pytest.mark.parametrize(("anchor", "zone", "day", "at", "expected_local", "expected_utc"), WALL_CLOCK)
def test_day_at_keeps_wall_clock_across_dst(
    anchor: str, zone: ZoneInfo, day: int, at: str, expected_local: str, expected_utc: str
) -> None:
    due = day_at(local(zone, anchor), zone, day, parse_clock(at))
    assert due.tzinfo == UTC
    assert due.isoformat() == expected_utc
    assert due.astimezone(zone).strftime("%Y-%m-%d %H:%M") == expected_local


def test_duration_is_elapsed_time_across_spring_forward() -> None:
    # 00:30 PST + 3h of real time on the spring-forward night is 04:30 PDT, not 03:30.
    start = local(LA, "2026-03-08 00:30")
    steps = [StepTiming("s", delay=parse_duration("+3h"))]
    plan = plan_steps(steps, start, LA, SendPolicy(Window(time(0), time(23, 59))), now=start)
    assert plan["s"].astimezone(LA).strftime("%H:%M") == "04:30"


# next_allowed: (zone, local instant, window, no_weekends, closures, expected local opening)
OPENINGS = [
    # Inside the window: unchanged.
    (LA, "2026-03-04 12:00", DEFAULT, False, set(), "2026-03-04 12:00"),
    # Enrolled at 19:55 local: still allowed, goes at once.
    (LA, "2026-03-04 19:55", DEFAULT, False, set(), "2026-03-04 19:55"),
    # 20:00 exactly is outside (end exclusive): next morning.
    (LA, "2026-03-04 20:00", DEFAULT, False, set(), "2026-03-05 08:00"),
    # Enrolled at 03:00 local: waits for 08:00 the same day.
    (NY, "2026-03-04 03:00", DEFAULT, False, set(), "2026-03-04 08:00"),
    (HNL, "2026-03-04 03:00", DEFAULT, False, set(), "2026-03-04 08:00"),
    (PHX, "2026-03-04 21:30", DEFAULT, False, set(), "2026-03-05 08:00"),
    # The night of spring forward: 08:00 on the DST day still exists and is the opening.
    (LA, "2026-03-07 22:00", DEFAULT, False, set(), "2026-03-08 08:00"),
    (NY, "2026-10-31 23:00", DEFAULT, False, set(), "2026-11-01 08:00"),
    # No weekends: Friday evening -> Monday morning.
    (LA, "2026-03-06 20:30", DEFAULT, True, set(), "2026-03-09 08:00"),
    # Eve of a holiday at 19:55 -> allowed now; at 20:05 -> skips the holiday to the 26th.
    (LA, "2026-12-24 19:55", DEFAULT, False, {date(2026, 12, 25)}, "2026-12-24 19:55"),
    (LA, "2026-12-24 20:05", DEFAULT, False, {date(2026, 12, 25)}, "2026-12-26 08:00"),
    # Closure on Friday plus no weekends -> Monday.
    (NY, "2026-12-24 20:05", DEFAULT, True, {date(2026, 12, 25)}, "2026-12-28 08:00"),
    # A campaign window narrower than the global one.
    (LA, "2026-03-04 08:30", NARROW, False, set(), "2026-03-04 09:00"),
    (LA, "2026-03-04 18:00", NARROW, False, set(), "2026-03-05 09:00"),
]


@pytest.mark.parametrize(("zone", "at", "window", "no_weekends", "closures", "expected"), OPENINGS)
def test_next_allowed_moves_into_the_window(
    zone: ZoneInfo, at: str, window: Window, no_weekends: bool, closures: set[date], expected: str
) -> None:
    instant = local(zone, at).astimezone(UTC)
    opening = next_allowed(instant, zone, window, no_weekends=no_weekends, closures=closures)
    assert opening.tzinfo == UTC
    assert opening.astimezone(zone).strftime("%Y-%m-%d %H:%M") == expected
    assert is_allowed(opening, zone, window, no_weekends=no_weekends, closures=closures)
    allowed_now = is_allowed(instant, zone, window, no_weekends=no_weekends, closures=closures)
    assert allowed_now == (opening == instant)


def test_window_accepts_a_plain_pair_of_times() -> None:
    instant = local(LA, "2026-03-04 06:00").astimezone(UTC)
    assert next_allowed(instant, LA, (time(8), time(20))) == local(LA, "2026-03-04 08:00")


def test_a_campaign_window_never_widens_the_global_one() -> None:
    assert DEFAULT.narrowed_to(Window(time(7), time(21))) == DEFAULT
    with pytest.raises(ValueError, match="overlap"):
        DEFAULT.narrowed_to(Window(time(20, 30), time(21)))


def test_a_calendar_with_no_open_day_is_an_error_not_a_hang() -> None:
    every_day = {date(2026, 1, 1) + timedelta(days=i) for i in range(800)}
    with pytest.raises(NoOpening):
        next_allowed(utc("2026-01-01 12:00"), LA, DEFAULT, closures=every_day)
    assert not is_allowed(utc("2026-01-01 20:00"), LA, DEFAULT, closures=every_day)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("+2h", timedelta(hours=2)), ("+30m", timedelta(minutes=30)), ("+1d", timedelta(days=1)),
     ("+1h30m", timedelta(hours=1, minutes=30)), ("2h", timedelta(hours=2))],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "+", "2 hours", "+2x", "-2h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["24:00", "9:30", "09:60", "noon"])
def test_bad_clock_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="24-hour"):
        parse_clock(text)


def days(*texts: str) -> Counter[date]:
    return Counter(date.fromisoformat(t) for t in texts)


# Caps: (other messages' local days, candidate local instant, expected local instant)
CAPS = [
    # Nothing else: unchanged.
    ([], "2026-03-04 10:00", "2026-03-04 10:00"),
    # Another campaign already has today: tomorrow's opening.
    (["2026-03-04"], "2026-03-04 10:00", "2026-03-05 08:00"),
    # Three in the rolling week behind: waits until the oldest leaves the window.
    (["2026-03-01", "2026-03-02", "2026-03-03"], "2026-03-04 10:00", "2026-03-08 08:00"),
    # Future messages count too (materialising next to an existing schedule).
    # (every 7-day run containing 03-04 .. 03-11 already holds three)
    (["2026-03-05", "2026-03-06", "2026-03-07"], "2026-03-04 10:00", "2026-03-12 08:00"),
    # Two in the week: one more fits.
    (["2026-03-01", "2026-03-02"], "2026-03-04 10:00", "2026-03-04 10:00"),
]


@pytest.mark.parametrize(("taken", "candidate", "expected"), CAPS)
def test_frequency_cap_moves_to_the_next_day_with_room(
    taken: list[str], candidate: str, expected: str
) -> None:
    policy = SendPolicy(DEFAULT)
    due = next_capped(local(LA, candidate).astimezone(UTC), LA, policy, CAP, days(*taken))
    assert due.astimezone(LA).strftime("%Y-%m-%d %H:%M") == expected


def test_caps_across_two_campaigns_spread_the_second_campaign() -> None:
    """Campaign A takes days 0, 2 and 4; campaign B (same days) is pushed so no day has two
    messages and no 7 days have more than three."""
    start = local(LA, "2026-03-02 09:00")  # a Monday
    policy = SendPolicy(DEFAULT)
    steps = [StepTiming(k, day_offset=d, at=time(10)) for k, d in (("a", 0), ("b", 2), ("c", 4))]
    first = plan_steps(steps, start, LA, policy, now=start, cap=CAP)
    taken = Counter(v.astimezone(LA).date() for v in first.values())
    second = plan_steps(steps, start, LA, policy, now=start, cap=CAP, taken=taken)
    all_days = sorted(v.astimezone(LA).date() for v in [*first.values(), *second.values()])
    assert len(set(all_days)) == len(all_days), "never two education messages on one local day"
    for i, day in enumerate(all_days):
        window = [d for d in all_days if day <= d < day + timedelta(days=7)]
        assert len(window) <= 3, f"more than 3 in the week from {day} (index {i})"
    assert min(second.values()) > max(first.values())


def test_plan_never_schedules_before_now_and_keeps_order() -> None:
    now = local(LA, "2026-03-04 19:55").astimezone(UTC)
    steps = [StepTiming("today", day_offset=0, at=time(10)), StepTiming("later", delay=timedelta(hours=2))]
    plan = plan_steps(steps, now, LA, SendPolicy(DEFAULT), now=now)
    assert plan["today"] == now  # 10:00 had passed: goes now, inside the window
    assert plan["later"].astimezone(LA).strftime("%Y-%m-%d %H:%M") == "2026-03-05 08:00"


@pytest.mark.parametrize(
    ("day", "at", "delay_seconds", "expected"),
    [
        # A stored step is "day N at HH:MM" (local wall clock, so across DST) or a delay.
        (3, "10:00", None, "2026-03-09 10:00 PDT"),
        (None, None, 7200, "2026-03-06 11:00 PST"),
        (None, None, 6 * 86400, "2026-03-12 10:00 PDT"),  # elapsed time: 09:00 PST + 6 x 24 h
    ],
)
def test_a_stored_step_is_due_at_its_local_day_and_clock_or_after_its_delay(
    day: int | None, at: str | None, delay_seconds: int | None, expected: str
) -> None:
    anchor = local(LA, "2026-03-06 09:00")  # two days before spring-forward
    timing = step_timing("step", day, at, delay_seconds)
    assert timing.nominal(anchor, LA).astimezone(LA).strftime("%Y-%m-%d %H:%M %Z") == expected


@pytest.mark.parametrize(
    ("local", "zone", "closes_utc"),
    [
        # The evening the clocks went forward in Los Angeles: 20:00 PDT is 03:00 UTC.
        (datetime(2026, 3, 8, 19, 0), LA, datetime(2026, 3, 9, 3, 0, tzinfo=UTC)),
        # The evening they went back: 20:00 PST is 04:00 UTC.
        (datetime(2026, 11, 1, 9, 30), LA, datetime(2026, 11, 2, 4, 0, tzinfo=UTC)),
        (datetime(2026, 7, 1, 8, 0), PHX, datetime(2026, 7, 2, 3, 0, tzinfo=UTC)),
        (datetime(2026, 7, 1, 19, 59), HNL, datetime(2026, 7, 2, 6, 0, tzinfo=UTC)),
    ],
)
def test_the_open_window_closes_at_its_local_end(
    local: datetime, zone: ZoneInfo, closes_utc: datetime
) -> None:
    instant = local.replace(tzinfo=zone)
    policy = SendPolicy(DEFAULT)
    assert policy.allows(instant, zone)
    assert policy.closes(instant, zone) == closes_utc
