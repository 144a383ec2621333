"""A global per-sender send rate, shared by every worker process on every machine.

Celery's ``rate_limit`` is per worker instance, so it cannot keep a Twilio long code at one
message per second once two workers run. Both limiters here hand out send *slots*: each
sender has one "next free instant"; a caller takes the slot at ``max(next_free, now)`` and
moves the mark one interval on (GCRA, the generic cell rate algorithm, without a burst).

- ``RedisRateLimiter`` (production): one atomic Lua script, timed by the Redis server's own
  clock (``TIME``), so workers on machines whose clocks disagree still share one schedule.
- ``DatabaseRateLimiter`` (embedded mode, no Redis): the ``rate_slots`` row of the sender,
  locked (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers).

``acquire`` only takes a slot it can use soon (``max_wait``). A caller told to wait longer
takes nothing and reschedules, so a backlog never books slots nobody will use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import redis
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings
from outreach.models.messages import RateSlot

# Slots are spaced this much wider than 1/rate. Callers sleep until their slot, and a busy
# machine wakes them late; a margin m keeps every 1-second window at or under the limit as
# long as one send is no more than m seconds later than the send one second after it (30 ms
# here, at any rate), at a cost of m of the throughput.
SAFETY_MARGIN = 0.03
# Longest wait a caller takes a slot for; beyond it, reschedule instead of holding a worker.
DEFAULT_MAX_WAIT = 5.0
# The database limiter's estimate of its commit time is the longest one seen, shrinking by
# this factor a call: it follows a machine that got busy at once and one that got quiet soon.
COMMIT_ESTIMATE_FADING = 0.9


class RateLimitUnavailable(Exception):
    """The limiter's store (Redis) could not be reached. Do not send; try again shortly."""


@dataclass(frozen=True)
class Slot:
    taken: bool
    wait: float  # seconds from now until the slot; when not taken, until the next free one
    at: float  # the slot's instant, seconds since the epoch on the limiter's clock


class RateLimiter(Protocol):
    def acquire(self, sender: str, now: datetime, *, max_wait: float = DEFAULT_MAX_WAIT) -> float:
        """Seconds to wait before sending (0.0 = now).

        When the result is at most ``max_wait``, the slot is yours: sleep that long and send.
        When it is larger, nothing was taken; the result says when to come back.
        """
        ...

    def reserve(self, sender: str, now: datetime, *, max_wait: float = DEFAULT_MAX_WAIT) -> Slot:
        """``acquire`` with the slot's details, for measuring the limiter itself."""
        ...

    def acquire_many(
        self, sender: str, count: int, now: datetime, *, max_wait: float = DEFAULT_MAX_WAIT
    ) -> Reservation:
        """Up to ``count`` consecutive slots in one round trip (a send task's whole batch)."""
        ...


@dataclass(frozen=True)
class Reservation:
    """Consecutive slots taken for one sender: ``waits`` are seconds from now until each.
    Fewer than asked were taken when the next one lay beyond ``max_wait``; ``next_wait`` says
    when that one frees up (0.0 when all were taken)."""

    waits: list[float]
    next_wait: float = 0.0


def interval_seconds(mps: float) -> float:
    if mps <= 0:
        raise ValueError("a send rate must be positive (OUTREACH_MAX_MPS / OUTREACH_MAX_MPS_OVERRIDES)")
    return (1.0 / mps) * (1.0 + SAFETY_MARGIN)


def rates_from_settings(settings: Settings) -> Callable[[str], float]:
    """Messages per second for a sender: its override, else ``max_mps``."""
    overrides: Mapping[str, float] = dict(settings.max_mps_overrides)
    default = settings.max_mps
    for value in (default, *overrides.values()):
        interval_seconds(value)  # refuse a zero or negative rate at start-up

    def rate_for(sender: str) -> float:
        return overrides.get(sender, default)

    return rate_for


# KEYS[1]: the sender's key. ARGV[1]: interval, ARGV[2]: max wait, both in microseconds;
# ARGV[3]: how many consecutive slots to take at most. Returns {the server's now, the wait of
# the first slot not taken (-1 when all were), then the wait of each slot taken}, all in
# microseconds. Microseconds since the epoch (~1.7e15) are exact in Lua's doubles (< 2^53).
_GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free < now then next_free = now end
local result = {string.format('%.0f', now), -1}
for i = 1, tonumber(ARGV[3]) do
  local wait = next_free - now
  if wait > tonumber(ARGV[2]) then
    result[2] = wait
    break
  end
  result[#result + 1] = wait
  next_free = next_free + tonumber(ARGV[1])
end
if #result > 2 then
  local ttl = math.ceil((next_free - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', next_free), 'PX', ttl)
end
return result
"""


class RedisRateLimiter:
    """GCRA in Redis. ``now`` is ignored: the Redis server's clock is the one clock."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        rate_for: Callable[[str], float],
        *,
        key_prefix: str = "outreach:rate:",
    ) -> None:
        self._client = client
        self._rate_for = rate_for
        self._prefix = key_prefix
        self._script = client.register_script(_GCRA_SCRIPT)

    def acquire(self, sender: str, now: datetime, *, max_wait: float = DEFAULT_MAX_WAIT) -> float:
        return self.reserve(sender, now, max_wait=max_wait).wait

    def reserve(self, sender: str, now: datetime, *, max_wait: float = DEFAULT_MAX_WAIT) -> Slot:
        server_now, reservation = self._take(sender, 1, max_wait)
        return _single(reservation, server_now)

    def acquire_many(
        self, sender: str, count: int, now: datetime, *, max_wait: float = DEFAULT_MAX_WAIT
    ) -> Reservation:
        return self._take(sender, count, max_wait)[1]

    def _take(self, sender: str, count: int, max_wait: float) -> tuple[float, Reservation]:
        """The server's clock (seconds since the epoch) and the slots taken by one script run."""
        interval_us = round(interval_seconds(self._rate_for(sender)) * 1_000_000)
        try:
            now_us, untaken, *taken = self._script(
                keys=[self._prefix + sender], args=[interval_us, round(max_wait * 1_000_000), count]
            )
        except redis.RedisError as exc:
            raise RateLimitUnavailable(f"rate limiter store unreachable ({type(exc).__name__})") from None
        waits = [max(0.0, int(w) / 1_000_000) for w in taken]
        return int(now_us) / 1_000_000, Reservation(waits, max(0.0, int(untaken) / 1_000_000))


def _single(reservation: Reservation, now: float) -> Slot:
    """A one-slot reservation as a ``Slot``; ``now`` on the limiter's clock, in epoch seconds."""
    if reservation.waits:
        return Slot(taken=True, wait=reservation.waits[0], at=now + reservation.waits[0])
    return Slot(taken=False, wait=reservation.next_wait, at=now + reservation.next_wait)


class DatabaseRateLimiter:
    """GCRA on the ``rate_slots`` table, for a single machine without Redis.

    Uses the callers' clocks (``now``), which agree on one machine; across machines whose
    clocks may drift, use Redis.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        rate_for: Callable[[str], float],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self._rate_for = rate_for
        self._monotonic = monotonic
        # How long a commit takes here lately (the longest, fading): see ``_take``.
        self._commit_seconds = 0.0

    def acquire(self, sender: str, now: datetime, *, max_wait: float = DEFAULT_MAX_WAIT) -> float:
        return self.reserve(sender, now, max_wait=max_wait).wait

    def reserve(self, sender: str, now: datetime, *, max_wait: float = DEFAULT_MAX_WAIT) -> Slot:
        start, reservation = self._take(sender, 1, now, max_wait)
        return _single(reservation, start.timestamp())

    def acquire_many(
        self, sender: str, count: int, now: datetime, *, max_wait: float = DEFAULT_MAX_WAIT
    ) -> Reservation:
        return self._take(sender, count, now, max_wait)[1]

    def _take(self, sender: str, count: int, now: datetime, max_wait: float) -> tuple[datetime, Reservation]:
        """The instant the waits count from, and the slots taken in one locked transaction."""
        called = self._monotonic()
        interval = timedelta(seconds=interval_seconds(self._rate_for(sender)))
        with self._session_factory() as session, session.begin():
            slot = _locked_slot(session, sender, now)
            # ``now`` was read before we queued for the row lock; a slot computed from it
            # could lie in the past and be used late, crowding the next one.
            locked = self._monotonic()
            now_at_lock = now + timedelta(seconds=locked - called)
            # Nor can the caller go before its commit: a free slot is taken from when that is
            # likely done. Taken from the lock instead, a slow commit (a busy machine) made
            # the caller go late and the next one, on time, follow it too closely (41 ms
            # after it at 20 MPS, whose slots are 51.5 ms apart).
            ready = now_at_lock + timedelta(seconds=self._commit_seconds)
            taken, untaken = _take_many(slot, ready, interval, count, max_wait)
            if taken:
                slot.next_free_at = taken[-1] + interval
        # The commit took time the caller need not wait again.
        spent = self._monotonic() - locked
        self._commit_seconds = max(spent, self._commit_seconds * COMMIT_ESTIMATE_FADING)
        waits = [max(0.0, (at - now_at_lock).total_seconds() - spent) for at in taken]
        next_wait = (untaken - now_at_lock).total_seconds() if untaken is not None else 0.0
        return now_at_lock + timedelta(seconds=spent), Reservation(waits, next_wait)


def _take_many(
    slot: RateSlot, start: datetime, interval: timedelta, count: int, max_wait: float
) -> tuple[list[datetime], datetime | None]:
    """Consecutive slot instants from ``start``, stopping at the first beyond ``max_wait``."""
    taken: list[datetime] = []
    at = max(slot.next_free_at, start)
    while len(taken) < count:
        if (at - start).total_seconds() > max_wait:
            return taken, at
        taken.append(at)
        at += interval
    return taken, None


def _locked_slot(session: Session, sender: str, now: datetime) -> RateSlot:
    query = select(RateSlot).where(RateSlot.sender == sender).with_for_update()
    slot = session.execute(query).scalar_one_or_none()
    if slot is not None:
        return slot
    # First use of this sender: create the row unless a concurrent caller just did.
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(RateSlot).values(sender=sender, next_free_at=now).on_conflict_do_nothing())
    return session.execute(query).scalar_one()


def limiter_from_settings(settings: Settings, session_factory: sessionmaker[Session]) -> RateLimiter:
    """Redis when ``OUTREACH_REDIS_URL`` is set, else the database."""
    rate_for = rates_from_settings(settings)
    if settings.redis_url:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
        )
        return RedisRateLimiter(client, rate_for)
    return DatabaseRateLimiter(session_factory, rate_for)
