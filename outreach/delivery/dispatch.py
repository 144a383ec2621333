"""The dispatcher: claim what is due, then hand ids to the send tasks after commit.

Beat starts ``dispatch_due`` every second; each run keeps claiming for up to ``run_for``
seconds, sleeping exactly until the next scheduled message falls due, which keeps the lag
between due and provider call in the tens of milliseconds without a separate daemon. With
nothing due soon it looks again every ``IDLE_POLL`` seconds, for rows inserted already due
(replies to patients also start a run of their own at once). What is not automated (staff's
answers, HELP, confirmations) goes to send tasks of its own on the replies lane, which send
workers take before the send queue, so it never waits behind a campaign's send tasks.
Overlapping runs (two beats, a slow tick) are harmless: the claim is exclusive. If enqueueing
fails after the claim committed, the rows sit in ``queued`` until their lease runs out and
the rescue sweep returns them to the schedule: nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from outreach.delivery.claim import Claim, claim_lanes, next_due_at
from outreach.delivery.send import Services
from outreach.outbox.idsets import slices

IDLE_POLL = 0.2  # seconds between looks at a schedule with nothing due sooner
# Ids per send task. Each task costs a broker round trip, Celery's own handling and two
# transactions whatever its size: at 50 that was a tenth of a worker's CPU per message (100:
# 0.78-0.80 instead of 0.89-0.90 ms, bench/delivery_bench.py). Still small enough to spread a
# burst over every pool process, and a provider call slower than the send lease allows hands
# the rest of a batch back rather than holding it (outreach.delivery.send).
CHUNK = 100
# A claim smaller than this many full tasks is split this many ways all the same: a burst of a
# hundred goes to two pool processes, and at a sender's rate limit two tasks keep taking slots
# while one hands what would wait too long back to the schedule (95-96% of the rate used with
# one task of 100, 96.5% with two of 50: bench/delivery_bench.py).
MIN_TASKS_PER_CLAIM = 2
# Send tasks allowed to wait in the broker, per lane, before the dispatcher stops claiming for
# that lane (backpressure): enough to keep every worker busy for a while, few enough that a
# backlog stays ``scheduled`` (cancellable, re-checked, not leased) until workers are about to
# send it.
MAX_WAITING_TASKS = 10
# Seconds between looks at a full queue. A full queue holds MAX_WAITING_TASKS x CHUNK messages,
# a second of sending at 1,000 a second, so a look every 50 ms never lets it run dry; each look
# is a broker round trip (at 20 ms they were a third of the dispatcher's CPU during a blast).
BACKPRESSURE_POLL = 0.05


def dispatch_due(
    services: Services,
    enqueue: Callable[[Sequence[Sequence[int]]], None],
    *,
    enqueue_replies: Callable[[Sequence[Sequence[int]]], None] | None = None,
    waiting: Callable[[], int] = lambda: 0,
    waiting_replies: Callable[[], int] = lambda: 0,
    batch_size: int = 500,
    run_for: float = 0.0,
) -> int:
    """Claim and enqueue until nothing is due (and ``run_for`` seconds have passed).

    ``enqueue`` publishes one send task per chunk of automated ids, ``enqueue_replies`` one per
    chunk of the rest (staff's answers, HELP, confirmations: the replies lane, which send
    workers take first; ``enqueue`` too if not given). ``waiting`` and ``waiting_replies`` say
    how many send tasks of each lane sit in the broker unconsumed. A lane with
    ``MAX_WAITING_TASKS`` or more gets nothing new: claiming faster than workers send only moves
    rows from ``scheduled`` to a queue whose leases may run out before a worker gets to them.
    A full send lane does not hold back the replies: while it is full, what is not automated
    is still claimed, every ``IDLE_POLL`` seconds; a full replies lane holds back both.
    """
    to_replies = enqueue_replies or enqueue
    deadline = time.monotonic() + run_for
    lease = timedelta(seconds=services.settings.claim_lease_seconds)
    total = 0
    next_replies_look = 0.0
    while True:
        sends_full = waiting() >= MAX_WAITING_TASKS
        look = not sends_full or time.monotonic() >= next_replies_look
        if look and sends_full:
            next_replies_look = time.monotonic() + IDLE_POLL
        # Workers take the replies lane first: while it is full, automated rows claimed now
        # would only wait, leased, behind it.
        replies_full = look and waiting_replies() >= MAX_WAITING_TASKS
        claim = Claim([], [])
        if look and not replies_full:
            with services.session_factory() as session, session.begin():
                claim = claim_lanes(session, services.clock(), batch_size, lease, automated=not sends_full)
        if claim.replies:
            to_replies(slices(claim.replies, task_size(len(claim.replies))))
        if claim.automated:
            enqueue(slices(claim.automated, task_size(len(claim.automated))))
        claimed = len(claim.ids)
        total += claimed
        if claimed == batch_size:
            continue  # more may be due right now
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return total
        if sends_full or replies_full:
            # What is due stays due while a lane is full, so the wait below would be none.
            time.sleep(min(BACKPRESSURE_POLL, remaining))
            continue
        with services.session_factory() as session:
            upcoming = next_due_at(session)
        wait = IDLE_POLL
        if upcoming is not None:
            wait = min(IDLE_POLL, max((upcoming - services.clock()).total_seconds(), 0.0))
        time.sleep(min(wait, remaining))


def task_size(claimed: int) -> int:
    """Ids per send task for a claim of ``claimed`` ids: ``CHUNK``, or less for a small claim
    so that it still makes ``MIN_TASKS_PER_CLAIM`` tasks."""
    return max(1, min(CHUNK, -(-claimed // MIN_TASKS_PER_CLAIM)))
