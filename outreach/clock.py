"""The clock a process reads: the wall clock, or one the settings fix (``OUTREACH_CLOCK``).

Built once at each entry point (worker, web, CLI, sandbox) and passed to service functions as
``now``. A fixed clock starts at the configured instant and advances in real time, so a
demo or a test started "at 03:00 Pacific" sees quiet hours, then time passing, as at night.
Processes started together from the same setting agree to within their start-up gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from outreach.config import Settings
from outreach.models.base import utcnow

Clock = Callable[[], datetime]


def from_settings(settings: Settings) -> Clock:
    if settings.clock is None:
        return utcnow
    return fixed_start(settings.clock)


def fixed_start(start: datetime, monotonic: Callable[[], float] = time.monotonic) -> Clock:
    """A clock that reads ``start`` now and advances with ``monotonic`` from here on."""
    began = monotonic()
    origin = start.astimezone(UTC)

    def now() -> datetime:
        return origin + timedelta(seconds=monotonic() - began)

    return now
