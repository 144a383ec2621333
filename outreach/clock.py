"""The clock a process reads: the wall clock, or one the settings fix (``OUTREACH_CLOCK``).

Built once at each entry point (worker, web, CLI, sandbox) and passed to service functions as
``now``. A fixed clock starts at the configured instant and advances in real time, so a
demo or a test started "at 03:00 Pacific" sees quiet hours, then time passing, as at night.
Each process starting from OUTREACH_CLOCK starts at that instant, so `outreach run` turns its
own clock into an offset (OUTREACH_CLOCK_OFFSET_SECONDS) for the processes it starts: they
then agree to the microsecond however long each took to start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from outreach.config import Settings
from outreach.models.base import utcnow

Clock = Callable[[], datetime]


def from_settings(settings: Settings) -> Clock:
    if settings.clock is not None:
        return fixed_start(settings.clock)
    if settings.clock_offset_seconds is not None:
        return offset(timedelta(seconds=settings.clock_offset_seconds))
    return utcnow


def offset(by: timedelta, wall: Clock = utcnow) -> Clock:
    """The wall clock moved by ``by``: processes given the same offset read the same time."""

    def now() -> datetime:
        return wall() + by

    return now


def child_environment(env: dict[str, str], clock: Clock, wall: Clock = utcnow) -> dict[str, str]:
    """``env`` for child processes, with a clock setting that makes theirs read what ``clock`` reads."""
    if clock is wall:
        return env
    child = {k: v for k, v in env.items() if k != "OUTREACH_CLOCK"}
    child["OUTREACH_CLOCK_OFFSET_SECONDS"] = f"{(clock() - wall()).total_seconds():.6f}"
    return child


def fixed_start(start: datetime, monotonic: Callable[[], float] = time.monotonic) -> Clock:
    """A clock that reads ``start`` now and advances with ``monotonic`` from here on."""
    began = monotonic()
    origin = start.astimezone(UTC)

    def now() -> datetime:
        return origin + timedelta(seconds=monotonic() - began)

    return now
