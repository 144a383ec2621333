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

A crisis reply must not queue behind the slots a campaign's send tasks booked seconds ahead
(at a long code's one a second, four sleeping tasks hold the next four seconds). So a caller
that sleeps towards a slot books it *yielding* (``yield_to_urgent``): the slot is recorded
with a ticket, and the caller spends the ticket (``use_slot``) when it wakes, just before its
provider call. An *urgent* caller takes the earliest recorded slot not yet spent instead of
the next free one; the caller whose ticket it was finds it gone and books again. Every
instant handed out is still used once at most, so the rate holds; only who sends first moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import redis
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings
from outreach.models.messages import RateBooking, RateSlot

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
        self,
        sender: str,
        count: int,
        now: datetime,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        yield_to_urgent: bool = False,
        urgent: bool = False,
    ) -> Reservation:
        """Up to ``count`` consecutive slots in one round trip (a send task's whole batch).

        ``yield_to_urgent``: each slot comes with a ticket, to spend with ``use_slot`` before
        sending; until then an urgent caller may take the slot. ``urgent``: take the earliest
        such slot not yet spent, else the next free one."""
        ...

    def use_slot(self, sender: str, ticket: int) -> bool:
        """Spend a yielding slot's ticket: True when the slot is still the caller's, False
        when an urgent caller took it (book again)."""
        ...


@dataclass(frozen=True)
class Reservation:
    """Slots taken for one sender: ``waits`` are seconds from now until each. Fewer than
    asked were taken when the next one lay beyond ``max_wait``; ``next_wait`` says when that
    one frees up (0.0 when all were taken). ``tickets``: for a yielding caller, one per slot
    (the slot's instant in microseconds on the limiter's clock); empty otherwise."""

    waits: list[float]
    next_wait: float = 0.0
    tickets: list[int] = field(default_factory=list)


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


# KEYS[1]: the sender's next free instant; KEYS[2]: its yielding slots not yet spent (a sorted
# set of instants). ARGV[1]: interval, ARGV[2]: max wait, both in microseconds; ARGV[3]: how
# many slots to take at most; ARGV[4]: 'yield' (record each slot taken), 'urgent' (take the
# earliest recorded slot first) or 'plain'. Returns {the server's now, the wait of the first
# slot not taken (-1 when all were), then the wait of each slot taken}, all in microseconds.
# Microseconds since the epoch (~1.7e15) are exact in Lua's doubles (< 2^53).
_GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local mode = ARGV[4]
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free < now then next_free = now end
local moved = false
if mode ~= 'plain' then
  -- Tickets a second stale belong to callers that died or gave up: forget them.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.0f', now - 1000000))
end
local result = {string.format('%.0f', now), -1}
for i = 1, tonumber(ARGV[3]) do
  local at = nil
  if mode == 'urgent' then
    local first = redis.call('ZRANGEBYSCORE', KEYS[2], string.format('%.0f', now), '+inf', 'LIMIT', 0, 1)
    if #first > 0 and tonumber(first[1]) - now <= max_wait then
      redis.call('ZREM', KEYS[2], first[1])
      at = tonumber(first[1])
    end
  end
  if at == nil then
    if next_free - now > max_wait then
      result[2] = next_free - now
      break
    end
    at = next_free
    next_free = next_free + interval
    moved = true
    if mode == 'yield' then
      redis.call('ZADD', KEYS[2], at, string.format('%.0f', at))
    end
  end
  result[#result + 1] = at - now
end
if moved then
  local ttl = math.ceil((next_free - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', next_free), 'PX', ttl)
  if mode == 'yield' then redis.call('PEXPIRE', KEYS[2], ttl + 1000) end
end
return result
"""


def _mode(yield_to_urgent: bool, urgent: bool) -> str:
    if yield_to_urgent and urgent:
        raise ValueError("an urgent caller takes slots; it does not yield them")
    return "urgent" if urgent else "yield" if yield_to_urgent else "plain"


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
        self,
        sender: str,
        count: int,
        now: datetime,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        yield_to_urgent: bool = False,
        urgent: bool = False,
    ) -> Reservation:
        return self._take(sender, count, max_wait, _mode(yield_to_urgent, urgent))[1]

    def use_slot(self, sender: str, ticket: int) -> bool:
        try:
            return bool(self._client.zrem(self._booked_key(sender), str(ticket)))
        except redis.RedisError as exc:
            raise RateLimitUnavailable(f"rate limiter store unreachable ({type(exc).__name__})") from None

    def _booked_key(self, sender: str) -> str:
        return f"{self._prefix}yielding:{sender}"

    def _take(
        self, sender: str, count: int, max_wait: float, mode: str = "plain"
    ) -> tuple[float, Reservation]:
        """The server's clock (seconds since the epoch) and the slots taken by one script run."""
        interval_us = round(interval_seconds(self._rate_for(sender)) * 1_000_000)
        try:
            now_us, untaken, *taken = self._script(
                keys=[self._prefix + sender, self._booked_key(sender)],
                args=[interval_us, round(max_wait * 1_000_000), count, mode],
            )
        except redis.RedisError as exc:
            raise RateLimitUnavailable(f"rate limiter store unreachable ({type(exc).__name__})") from None
        waits = [max(0.0, int(w) / 1_000_000) for w in taken]
        tickets = [int(now_us) + int(w) for w in taken] if mode == "yield" else []
        return int(now_us) / 1_000_000, Reservation(waits, max(0.0, int(untaken) / 1_000_000), tickets)


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
        self,
        sender: str,
        count: int,
        now: datetime,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        yield_to_urgent: bool = False,
        urgent: bool = False,
    ) -> Reservation:
        return self._take(sender, count, now, max_wait, _mode(yield_to_urgent, urgent))[1]

    def use_slot(self, sender: str, ticket: int) -> bool:
        with self._session_factory() as session, session.begin():
            spent = session.execute(
                delete(RateBooking).where(RateBooking.sender == sender, RateBooking.at == _instant(ticket))
            )
        return bool(spent.rowcount)  # type: ignore[attr-defined]

    def _take(
        self, sender: str, count: int, now: datetime, max_wait: float, mode: str = "plain"
    ) -> tuple[datetime, Reservation]:
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
            yielding = _Yielding(session, sender, ready) if mode != "plain" else None
            taken, untaken = _take_many(slot, ready, interval, count, max_wait, yielding, mode == "urgent")
        # The commit took time the caller need not wait again.
        spent = self._monotonic() - locked
        self._commit_seconds = max(spent, self._commit_seconds * COMMIT_ESTIMATE_FADING)
        waits = [max(0.0, (at - now_at_lock).total_seconds() - spent) for at in taken]
        next_wait = (untaken - now_at_lock).total_seconds() if untaken is not None else 0.0
        tickets = [_ticket(at) for at in taken] if mode == "yield" else []
        return now_at_lock + timedelta(seconds=spent), Reservation(waits, next_wait, tickets)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _ticket(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def _instant(ticket: int) -> datetime:
    return _EPOCH + ticket * _MICROSECOND


class _Yielding:
    """The sender's yielding slots not yet spent (``rate_bookings``), inside the locked
    transaction of ``DatabaseRateLimiter._take``."""

    def __init__(self, session: Session, sender: str, ready: datetime) -> None:
        self._session = session
        self._sender = sender
        self._ready = ready
        # Tickets a second stale belong to callers that died or gave up: forget them.
        stale = ready - timedelta(seconds=1)
        session.execute(delete(RateBooking).where(RateBooking.sender == sender, RateBooking.at < stale))

    def record(self, at: datetime) -> None:
        self._session.add(RateBooking(sender=self._sender, at=at))

    def take_earliest(self, max_wait: float) -> datetime | None:
        query = (
            select(RateBooking)
            .where(RateBooking.sender == self._sender, RateBooking.at >= self._ready)
            .order_by(RateBooking.at)
            .limit(1)
        )
        booking = self._session.scalars(query).first()
        if booking is None or (booking.at - self._ready).total_seconds() > max_wait:
            return None
        self._session.delete(booking)
        self._session.flush()
        return booking.at


def _take_many(
    slot: RateSlot,
    start: datetime,
    interval: timedelta,
    count: int,
    max_wait: float,
    yielding: _Yielding | None = None,
    urgent: bool = False,
) -> tuple[list[datetime], datetime | None]:
    """Slot instants from ``start``, stopping at the first beyond ``max_wait``: an urgent
    caller's first from the yielding slots, then (like everyone's) consecutive free ones."""
    taken: list[datetime] = []
    steal_from = yielding if urgent else None
    while len(taken) < count:
        earliest = steal_from.take_earliest(max_wait) if steal_from is not None else None
        if earliest is not None:
            taken.append(earliest)
            continue
        steal_from = None  # none left to take: no second look
        at = max(slot.next_free_at, start)
        if (at - start).total_seconds() > max_wait:
            return taken, at
        taken.append(at)
        slot.next_free_at = at + interval
        if yielding is not None and not urgent:
            yielding.record(at)
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
