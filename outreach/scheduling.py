"""When may an automated message go out? Pure functions: no database, ``now`` passed in.

Every instant in and out is an aware UTC datetime. Wall-clock rules (windows, "day 3 at
10:00", closures, caps per local day) are applied in the recipient's ``ZoneInfo`` and
converted back to UTC before any arithmetic, so DST never moves a message:

* a local time that does not exist (spring-forward gap, e.g. 02:30 on the second Sunday of
  March in Los Angeles) moves forward by the length of the gap (03:30);
* a local time that exists twice (fall-back fold) means its first occurrence (``fold=0``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

# Give up looking for an opening after this many local days (a calendar closed for a year is a
# configuration mistake, not a reason to loop forever).
MAX_SEARCH_DAYS = 400

_DURATION = re.compile(r"^\+?\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class NoOpening(ValueError):
    """No allowed instant within MAX_SEARCH_DAYS: the window, weekends and closures exclude everything."""


@dataclass(frozen=True)
class Window:
    """Allowed local hours, ``start`` inclusive, ``end`` exclusive."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError("window start must be before its end")

    def narrowed_to(self, other: Window) -> Window:
        """The intersection: a campaign window may narrow the global one, never widen it."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        if not start < end:
            raise ValueError("the campaign window does not overlap the global send window")
        return Window(start, end)


# Callers may pass a plain ``(start, end)`` pair wherever a Window is expected.
WindowLike = Window | tuple[time, time]


def as_window(window: WindowLike) -> Window:
    return window if isinstance(window, Window) else Window(window[0], window[1])


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``per_day`` counted messages per local day and ``per_week`` in any 7 consecutive
    local days (a rolling week)."""

    per_day: int
    per_week: int


@dataclass(frozen=True)
class SendPolicy:
    window: Window
    no_weekends: bool = False
    closures: frozenset[date] = field(default_factory=frozenset)

    def allows(self, instant: datetime, zone: ZoneInfo) -> bool:
        return is_allowed(instant, zone, self.window, no_weekends=self.no_weekends, closures=self.closures)

    def next_opening(self, instant: datetime, zone: ZoneInfo) -> datetime:
        return next_allowed(instant, zone, self.window, no_weekends=self.no_weekends, closures=self.closures)

    def closes(self, instant: datetime, zone: ZoneInfo) -> datetime:
        """When the window open at ``instant`` (an allowed instant) closes, in UTC."""
        return to_utc(instant.astimezone(zone).date(), self.window.end, zone)


def parse_clock(value: str) -> time:
    """``"HH:MM"`` (24-hour) to a time; ValueError names the expected format."""
    match = _CLOCK.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("expected a 24-hour time like 09:30")
    return time(int(match.group(1)), int(match.group(2)))


def parse_duration(value: str) -> timedelta:
    """``"+2h"``, ``"+30m"``, ``"+1d"``, ``"+1h30m"``: elapsed time (a day here is 24 hours)."""
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise ValueError('expected a duration like "+2h", "+30m", "+1d" or "+1h30m"')
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def to_utc(local_day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time, DST-safe (see module docstring).

    ``fold=0`` gives the first occurrence in a fold; in a gap, Python applies the offset in
    force before the transition, which lands the instant past the gap by the gap's length.
    """
    naive = datetime.combine(local_day, clock)
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def local_day_of(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


def day_at(anchor: datetime, zone: ZoneInfo, day_offset: int, clock: time) -> datetime:
    """ "Day N at HH:MM": the anchor's local date plus N calendar days, at that local time."""
    return to_utc(local_day_of(anchor, zone) + timedelta(days=day_offset), clock, zone)


def after(anchor: datetime, delay: timedelta) -> datetime:
    """ "+2h": elapsed time from the anchor, so it is the same on a DST night."""
    # Aware arithmetic in a local zone is wall-clock arithmetic in Python; in UTC it is elapsed time.
    return anchor.astimezone(UTC) + delay


def is_open_day(day: date, *, no_weekends: bool, closures: frozenset[date] | set[date]) -> bool:
    return day not in closures and not (no_weekends and day.weekday() >= 5)


def next_allowed(
    instant: datetime,
    zone: ZoneInfo,
    window: WindowLike,
    *,
    no_weekends: bool = False,
    closures: frozenset[date] | set[date] = frozenset(),
) -> datetime:
    """The earliest allowed instant at or after ``instant`` (UTC).

    Allowed: inside ``window`` in the recipient's local time, on a local day that is not a
    closure (and not a Saturday or Sunday when ``no_weekends``). A message outside the window
    moves to the next opening; it is never dropped here.
    """
    window = as_window(window)
    instant = instant.astimezone(UTC)
    local = instant.astimezone(zone)
    day = local.date()
    for _ in range(MAX_SEARCH_DAYS):
        if is_open_day(day, no_weekends=no_weekends, closures=closures):
            opens, closes = to_utc(day, window.start, zone), to_utc(day, window.end, zone)
            if instant < opens:
                return opens
            if instant < closes:
                return instant
        day += timedelta(days=1)
        instant = max(instant, to_utc(day, time(0, 0), zone))
    raise NoOpening(f"no allowed sending time within {MAX_SEARCH_DAYS} days")


def is_allowed(
    instant: datetime,
    zone: ZoneInfo,
    window: WindowLike,
    *,
    no_weekends: bool = False,
    closures: frozenset[date] | set[date] = frozenset(),
) -> bool:
    try:
        return next_allowed(instant, zone, window, no_weekends=no_weekends, closures=closures) == instant
    except NoOpening:
        return False


def count_days(instants: Iterable[datetime], zone: ZoneInfo) -> Counter[date]:
    """How many messages fall on each local day."""
    counted: Counter[date] = Counter()
    for instant in instants:
        counted[local_day_of(instant, zone)] += 1
    return counted


def cap_allows_day(day: date, taken: Counter[date], cap: FrequencyCap, *, look_ahead: bool = True) -> bool:
    """Would one more message on ``day`` respect the cap?

    The rolling week is every run of 7 consecutive local days containing ``day``. At
    materialisation the contact's future messages are known too, so every such run is checked
    (``look_ahead``); at send time only the runs ending today matter (later messages are
    re-checked when they come due).
    """
    if taken[day] >= cap.per_day:
        return False
    last_start = 0 if not look_ahead else 6
    for start_offset in range(-6, last_start + 1):
        first = day + timedelta(days=start_offset)
        if sum(taken[first + timedelta(days=i)] for i in range(7)) >= cap.per_week:
            return False
    return True


def next_capped(
    instant: datetime,
    zone: ZoneInfo,
    policy: SendPolicy,
    cap: FrequencyCap,
    taken: Counter[date],
    *,
    look_ahead: bool = True,
) -> datetime:
    """The earliest instant at or after ``instant`` inside the policy and under the cap.

    ``taken`` counts the contact's other counted messages per local day (see ``count_days``).
    A day that is full moves the message to the next day's opening.
    """
    candidate = policy.next_opening(instant, zone)
    for _ in range(MAX_SEARCH_DAYS):
        day = local_day_of(candidate, zone)
        if cap_allows_day(day, taken, cap, look_ahead=look_ahead):
            return candidate
        candidate = policy.next_opening(to_utc(day + timedelta(days=1), time(0, 0), zone), zone)
    raise NoOpening(f"no day under the frequency cap within {MAX_SEARCH_DAYS} days")


@dataclass(frozen=True)
class StepTiming:
    """When a step is due relative to the enrollment's start: exactly one of the two forms."""

    key: str
    day_offset: int | None = None
    at: time | None = None
    delay: timedelta | None = None

    def nominal(self, anchor: datetime, zone: ZoneInfo) -> datetime:
        if self.delay is not None:
            return after(anchor, self.delay)
        assert self.day_offset is not None and self.at is not None
        return day_at(anchor, zone, self.day_offset, self.at)


class TimedStep(Protocol):
    """What a stored campaign step (``CampaignStep``) carries about its timing."""

    @property
    def key(self) -> str: ...
    @property
    def day_offset(self) -> int | None: ...
    @property
    def at_time(self) -> str | None: ...
    @property
    def delay_seconds(self) -> int | None: ...


def step_timing(key: str, day_offset: int | None, at: str | None, delay_seconds: int | None) -> StepTiming:
    """A step's timing from its stored form: a delay in seconds, or a day offset at ``"HH:MM"``."""
    if delay_seconds is not None:
        return StepTiming(key, delay=timedelta(seconds=delay_seconds))
    assert day_offset is not None and at is not None
    return StepTiming(key, day_offset=day_offset, at=parse_clock(at))


def timing_of(step: TimedStep) -> StepTiming:
    return step_timing(step.key, step.day_offset, step.at_time, step.delay_seconds)


def plan_steps(
    steps: Sequence[StepTiming],
    anchor: datetime,
    zone: ZoneInfo,
    policy: SendPolicy,
    *,
    now: datetime,
    cap: FrequencyCap | None = None,
    taken: Counter[date] | None = None,
) -> dict[str, datetime]:
    """Due instants (UTC) for each step, in order: nominal time, never before ``now``, moved
    into the window and, when ``cap`` is given, past full days. Each planned step counts
    against the cap for the ones after it."""
    counted: Counter[date] = Counter(taken or {})
    planned: dict[str, datetime] = {}
    for step in steps:
        due = max(step.nominal(anchor, zone), now)
        if cap is None:
            due = policy.next_opening(due, zone)
        else:
            due = next_capped(due, zone, policy, cap, counted)
            counted[local_day_of(due, zone)] += 1
        planned[step.key] = due
    return planned
