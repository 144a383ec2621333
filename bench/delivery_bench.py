"""Delivery, end to end: claim -> Celery task -> real twilio client -> sandbox -> recorded ``sent``.

Real processes, configured only through OUTREACH_* variables as in production (the helpers of
``tests/support``): PostgreSQL (a scratch database, migrated, dropped at the end), the local
Redis (a queue name of this run's own), the sandbox in its own process with status callbacks
off, Celery workers and one beat. Phases, in one run:

1. throughput with one, then two worker processes: N "system" SMS rows due at once
   (contacts with SMS consent; no window or cap effects), ``max_mps`` far above the load;
   msgs/s from the instant they fell due to the last one recorded ``sent``;
2. scheduling lag, due_at -> the sandbox's accept time, for a sparse schedule (messages spread
   over tens of seconds) with beat ticking the dispatcher;
3. rate-limit precision end to end: ``max_mps`` 10, 100 messages due at once, two workers;
   from the sandbox's accept times: the busiest 1 s window and the share of capacity used;
4. the naive baseline (``bench.naive_eta``): one Celery task per message with a countdown
   longer than a short visibility timeout, two workers, on a Redis server of its own (kombu's
   unacked index is per Redis database, so a 5 s visibility timeout would re-deliver other
   apps' tasks on a shared server); its throughput and the duplicates the sandbox accepted.

    .venv/bin/python -m bench.delivery_bench [--messages 20000 --window 20] [--lag-messages 300]
        [--lag-spread 30] [--pool prefork --concurrency N] [--phases throughput,lag,rate,naive]

Prints (what, figure) pairs; ``pairs()`` returns them for bench/__main__.py.
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from bench import cpu, naive_eta, ratelimit_bench
from outreach.celeryapp import replies_queue
from outreach.config import Settings
from outreach.db import make_engine, make_session_factory
from outreach.migrate import upgrade
from outreach.models import Message, MessageState, utcnow
from outreach.outbox import insert_messages
from outreach.sandbox.control import SandboxControl, SandboxMessage
from tests.support import services
from tests.support.e2e import environment, system_settings
from tests.support.processes import Stack, free_port, private_redis, stack
from tests.support.sandbox import running_sandbox
from tests.support.waiting import wait_for

GOAL_MPS = 1000.0
GOAL_LAG_P50 = 0.050
GOAL_LAG_P99 = 1.0
GOAL_UTILISATION = 0.95
RATE_MPS = 10.0
RATE_MESSAGES = 100
NAIVE_MESSAGES = 1000
NAIVE_COUNTDOWN = 15.0
WARMUP_MESSAGES = 100

Pairs = list[tuple[str, str]]
PHASES = frozenset({"throughput", "lag", "rate", "naive"})
CONTROL_PROCESSES = 3  # the control worker's pool, as docker-compose.yml's control service
PENDING = {MessageState.SCHEDULED, MessageState.QUEUED, MessageState.SENDING}


@dataclass(frozen=True)
class WorkerSpec:
    """How each worker process runs its tasks."""

    pool: str = "prefork"
    concurrency: int = 0  # 0: the worker's own default (OUTREACH_WORKER_CONCURRENCY)
    # The production shape (docker-compose.yml): send workers take only send tasks, and a
    # control worker of CONTROL_PROCESSES runs the dispatcher. Otherwise each worker takes both.
    control_apart: bool = False

    def label(self) -> str:
        apart = ", control worker apart" if self.control_apart else ", each taking both queues"
        return f"{self.pool} x{self.concurrency or 'default'}{apart}"


@dataclass
class Bench:
    """What every phase shares: the database, the sandbox, the settings the processes get."""

    settings: Settings  # aimed at the sandbox
    control: SandboxControl
    factory: sessionmaker[Session]
    contact_ids: list[int]
    log_dir: Path
    log: Callable[[str], None]
    sequence: int = 0
    # Each phase's rows by id range: the driver's polling must stay cheap next to the pipeline.
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)

    def tag(self, what: str) -> str:
        self.sequence += 1
        return f"{what}{self.sequence}"


# ---- setup -------------------------------------------------------------------------------


def bench_settings(url: str, web_port: int) -> Settings:
    """The processes' settings for a benchmark run: production leases and timeouts."""
    return system_settings(url, web_port).model_copy(
        update={
            # Far above the load: the limiter must not be what bounds throughput.
            "max_mps": 1_000_000.0,
            "max_mps_overrides": {},
            # Production leases: a backlog of queued ids must not be "rescued" mid-run.
            "claim_lease_seconds": 300.0,
            "send_lease_seconds": 120.0,
            "twilio_timeout_seconds": 10.0,
            "reconcile_after_seconds": 10.0,
            # A sender of this run's own: the Redis rate key is per sender.
            "twilio_from": f"+1555{random.randrange(10**7):07d}",
        }
    )


def _seed_contacts(url: str, count: int) -> list[int]:
    """Contacts with SMS care consent, straight in SQL (setup is not measured)."""
    with psycopg.connect(services.libpq(url)) as conn:
        conn.execute(
            """INSERT INTO contacts (first_name, last_name, phone, email, timezone, language,
                                     created_at, updated_at)
               SELECT 'Pat', 'Bench', '+1415' || lpad(n::text, 7, '0'), 'b' || n || '@example.org',
                      'America/New_York', 'en', now(), now()
               FROM generate_series(1, %s) AS n""",
            (count,),
        )
        conn.execute(
            """INSERT INTO consent_events (contact_id, channel, category, state, source, evidence,
                                           recorded_by, occurred_at)
               SELECT id, 'sms', 'care', 'granted', 'staff', 'bench', 'bench', now() FROM contacts"""
        )
        conn.execute(
            """INSERT INTO consents (contact_id, channel, category, state, updated_at, event_id)
               SELECT contact_id, channel, category, state, occurred_at, id FROM consent_events"""
        )
        conn.execute("ANALYZE")
        return [row[0] for row in conn.execute("SELECT id FROM contacts ORDER BY id")]


def _body(tag: str, n: int) -> str:
    return f"Bench {tag} #{n}: a message from your clinic."


def _insert(bench: Bench, tag: str, due_ats: Sequence[datetime]) -> None:
    contacts = bench.contact_ids
    rows = [
        {
            "idempotency_key": f"bench:{tag}:{n}",
            "contact_id": contacts[n % len(contacts)],
            "channel": "sms",
            "category": "care",
            "kind": "system",
            "body_override": _body(tag, n),
            "due_at": due,
        }
        for n, due in enumerate(due_ats)
    ]
    with bench.factory.begin() as session:
        insert_messages(session, rows, now=utcnow())
        low, high = session.execute(
            select(func.min(Message.id), func.max(Message.id)).where(
                Message.idempotency_key.in_([rows[0]["idempotency_key"], rows[-1]["idempotency_key"]])
            )
        ).one()
    bench.ranges[tag] = (low, high)
    # A live outbox has statistics; a table that grew by 20,000 rows a moment ago has none until
    # autovacuum comes round (up to a minute). Without them the foreign-key checks of
    # message_attempts keep a sequential-scan plan made when the table was nearly empty, and a
    # run measures that planner state, not the pipeline (20-30 ms per attempt row, seen here).
    with bench.factory.begin() as session:
        session.execute(text("ANALYZE messages, message_attempts"))


def _fall_due(bench: Bench, tag: str, messages: int, ahead: timedelta) -> datetime:
    """``messages`` rows that all fall due at once, ``ahead`` from now; returns that instant.

    Inserting 20,000 rows takes seconds: they go in far in the future, then one UPDATE makes
    them due, so a measurement starts at a known instant with every row committed."""
    _insert(bench, tag, [utcnow() + timedelta(days=1)] * messages)
    due = utcnow() + ahead
    with bench.factory.begin() as session:
        moved = update(Message).where(_of(bench, tag)).values(due_at=due)
        session.execute(moved.execution_options(synchronize_session=False))
    return due


def _of(bench: Bench, tag: str) -> ColumnElement[bool]:
    """The rows of one phase (ids are consecutive: one multi-row insert each)."""
    low, high = bench.ranges[tag]
    return Message.id.between(low, high)


def _states(bench: Bench, tag: str) -> dict[str, int]:
    with bench.factory() as session:
        rows = session.execute(
            select(Message.state, func.count())
            .where(_of(bench, tag))
            .group_by(Message.state)
        ).all()
    return {str(state): int(n) for state, n in rows}


def _wait_sent(bench: Bench, tag: str, count: int, timeout: float) -> None:
    def settled() -> bool:
        states = _states(bench, tag)
        return sum(n for s, n in states.items() if s not in PENDING) >= count

    wait_for(settled, timeout=timeout, interval=0.25, what=f"{count} messages of {tag} to be sent")
    states = _states(bench, tag)
    # Delivered is sent and then some: with the sandbox's callbacks on (``callbacks_bench``)
    # the first can be delivered before the last is sent.
    if states.get(MessageState.SENT, 0) + states.get(MessageState.DELIVERED, 0) != count:
        raise RuntimeError(f"{tag}: expected {count} sent, got states {states}")


def _last_sent_at(bench: Bench, tag: str) -> datetime:
    with bench.factory() as session:
        last = session.scalar(
            select(func.max(Message.sent_at)).where(_of(bench, tag))
        )
    assert last is not None
    return last


def _accepted(bench: Bench, tag: str) -> dict[int, SandboxMessage]:
    """The sandbox's outbound messages of this phase, by message number."""
    prefix = f"Bench {tag} #"
    found: dict[int, SandboxMessage] = {}
    for message in bench.control.messages():
        if message.direction == "outbound-api" and message.body.startswith(prefix):
            found[int(message.body[len(prefix) :].split(":", 1)[0])] = message
    return found


def _start_worker(
    processes: Stack, name: str, spec: WorkerSpec, app: str = "worker", queues: str = "all"
) -> None:
    # Stack.start_worker always runs prefork ``-A worker``; the bench also tries other pools
    # and the naive app, so it spawns through the same helper with its own arguments.
    processes._spawn(
        name,
        ["-m", "celery", "-A", app, "worker", "--loglevel", "info", "--pool", spec.pool,
         *(["--concurrency", str(spec.concurrency)] if spec.concurrency else []),
         "--hostname", f"{name}@%h",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        {"OUTREACH_WORKER_QUEUES": queues},
    )
    wait_for(lambda: " ready." in processes.log(name), timeout=60, what=f"{name} to be ready")


@contextmanager
def _stack(bench: Bench, name: str, **changes: object) -> Iterator[Stack]:
    settings = bench.settings.model_copy(update=changes)
    log_dir = bench.log_dir / name
    log_dir.mkdir()
    with stack(environment(settings), log_dir) as processes:
        try:
            yield processes
        except BaseException:
            for process in sorted(processes.processes):
                print(f"----- {name}/{process} log -----\n{processes.log(process)[-3000:]}")
            raise


# ---- phases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    workers: int
    made_due: int  # rows that fell due at once
    messages: int  # of them, recorded sent within the window
    seconds: float  # due instant -> last of them recorded sent (or the window, if not all made it)
    accepted: int  # provider accepts, counted by the sandbox (includes sends finishing after the window)
    accept_span: float  # first -> last provider accept
    load: float  # 1-minute load average when the window closed
    # CPU seconds per part of the system over the window (``bench.cpu``), for "where it goes".
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def mps(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_mps(self) -> float:
        return (self.accepted - 1) / self.accept_span if self.accept_span > 0 else 0.0


def _warm_up(bench: Bench, messages: int = WARMUP_MESSAGES) -> None:
    """Forked children import, connect and open keep-alive sessions on their first tasks."""
    tag = bench.tag("warm")
    _insert(bench, tag, [utcnow()] * messages)
    _wait_sent(bench, tag, messages, timeout=60)


def _stop_leftovers(bench: Bench, tag: str) -> None:
    """End a measurement: cancel what was not sent, drop the queued tasks, let in-flight sends finish.

    The cancel is conditional on the pending states, like every state change of the pipeline,
    so a send already past ``queued`` is untouched. A send task near its sender's rate hands
    back what it could not send within its 5 s (``sending -> scheduled``), after the cancel; so
    the cancel is repeated until nothing of ``tag`` is pending or in flight, or those rows would
    be sent during the next measurement, ahead of its own (at 1 MPS, trial after trial).
    """
    unsettled = {MessageState.SCHEDULED, MessageState.QUEUED, MessageState.SENDING}

    def settled() -> bool:
        _cancel_pending(bench, tag)
        _drop_send_tasks(bench)
        return not unsettled & set(_states(bench, tag))

    wait_for(settled, timeout=60, interval=0.5, what=f"in-flight sends of {tag} to finish")


def _cancel_pending(bench: Bench, tag: str) -> None:
    # The rows are locked in id order, the order the workers lock them in: a plain UPDATE locks
    # them in whatever order it finds them and deadlocked with a worker's prepare.
    pending = (
        select(Message.id)
        .where(_of(bench, tag), Message.state.in_([MessageState.SCHEDULED, MessageState.QUEUED]))
        .order_by(Message.id)
        .with_for_update()
        .cte("pending")
    )
    with bench.factory.begin() as session:
        session.execute(
            update(Message)
            .where(
                Message.id == pending.c.id,
                Message.state.in_([MessageState.SCHEDULED, MessageState.QUEUED]),
            )
            .values(state=MessageState.CANCELLED, state_reason="benchmark window over")
            .execution_options(synchronize_session=False)
        )


def _drop_send_tasks(bench: Bench) -> None:
    broker = redis.Redis.from_url(bench.settings.broker_url)
    try:
        # kombu's Redis transport keeps a queue as a list under its name (plus one list per
        # priority step, when priorities are used). The bench's rows are not automated, so
        # their tasks are on the replies lane.
        for queue in (bench.settings.celery_queue, replies_queue(bench.settings)):
            broker.delete(queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9)))
    finally:
        broker.close()


def _throughput(bench: Bench, workers: int, messages: int, window: float) -> Throughput:
    """``messages`` rows fall due at once; what is sent within ``window`` seconds counts."""
    _warm_up(bench)
    bench.control.reset()
    tag = bench.tag("tp")
    # (Inserting them already "due in 0.5 s" made them visible only after their due instant,
    # and the window started with seconds lost.)
    due = _fall_due(bench, tag, messages, timedelta(seconds=2))
    if utcnow() >= due:
        raise RuntimeError(f"{tag}: the rows became due before they were committed; the window starts late")
    closes = due + timedelta(seconds=window)

    def done() -> bool:
        return utcnow() >= closes or _states(bench, tag).get(MessageState.SENT, 0) >= messages

    def started() -> bool:
        return utcnow() >= due

    wait_for(started, timeout=10, interval=0.01, what=f"{tag} to fall due")
    cpu_before = cpu.snapshot()
    # Polled once a second: the driver's own queries must stay small next to the pipeline.
    wait_for(done, timeout=window + 60, interval=1.0, what=f"{tag} to be sent or the window to close")
    cpu_used = cpu.spent(cpu_before, cpu.snapshot())
    load = os.getloadavg()[0]
    _stop_leftovers(bench, tag)
    with bench.factory() as session:
        in_window = (
            session.scalar(
                select(func.count()).where(
                    _of(bench, tag),
                    Message.state == MessageState.SENT,
                    Message.sent_at <= closes,
                )
            )
            or 0
        )
    last = _last_sent_at(bench, tag)
    accepted = _accepted(bench, tag)
    if bench.control.accepts().duplicates:
        raise RuntimeError(f"{tag}: the sandbox accepted some message twice")
    times = sorted(m.accepted_at for m in accepted.values())
    seconds = (last - due).total_seconds() if in_window == messages else window
    return Throughput(
        workers=workers,
        made_due=messages,
        messages=in_window,
        seconds=seconds,
        accepted=len(accepted),
        accept_span=(times[-1] - times[0]).total_seconds() if times else 0.0,
        load=load,
        cpu=cpu_used,
    )


@dataclass(frozen=True)
class Lag:
    messages: int
    spread: float
    p50: float
    p99: float
    worst: float


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _lag(bench: Bench, messages: int, spread: float) -> Lag:
    bench.control.reset()
    tag = bench.tag("lag")
    start = utcnow() + timedelta(seconds=1.0)
    rng = random.Random(4)
    # One message in each of ``messages`` equal slices of the spread, at a random point in it.
    due_ats = [start + timedelta(seconds=spread * (n + rng.random()) / messages) for n in range(messages)]
    _insert(bench, tag, due_ats)
    _wait_sent(bench, tag, messages, timeout=spread + 60)
    accepted = _accepted(bench, tag)
    lags = [(accepted[n].accepted_at - due).total_seconds() for n, due in enumerate(due_ats)]
    return Lag(messages, spread, _percentile(lags, 0.5), _percentile(lags, 0.99), max(lags))


@dataclass(frozen=True)
class RateRun:
    mps: float
    messages: int
    busiest_window: int
    utilisation: float
    seconds: float
    gap_min_ms: float  # shortest time between two accepts (the slots are 1/MPS + 3% apart)


def _busiest_window(instants: Sequence[float]) -> int:
    times = sorted(instants)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def _rate(bench: Bench, spec: WorkerSpec) -> RateRun:
    with _stack(bench, "rate", max_mps=RATE_MPS) as processes:
        for n in (1, 2):
            _start_worker(processes, f"worker{n}", spec)
        processes.start_beat("beat1")
        bench.control.reset()
        tag = bench.tag("rate")
        _insert(bench, tag, [utcnow()] * RATE_MESSAGES)
        _wait_sent(bench, tag, RATE_MESSAGES, timeout=RATE_MESSAGES / RATE_MPS + 60)
    instants = sorted(m.accepted_at.timestamp() for m in _accepted(bench, tag).values())
    span = instants[-1] - instants[0]
    # The messages sent in [first, last) over what the rate allows in that span.
    precision = ratelimit_bench.analyse(instants, RATE_MPS, instants[0], instants[-1])
    return RateRun(
        RATE_MPS, len(instants), _busiest_window(instants), precision.utilisation, span, precision.gap_min_ms
    )


@dataclass(frozen=True)
class Naive:
    messages: int
    countdown: float
    visibility_timeout: float
    unique: int
    accepts: int
    duplicates: int  # accepts beyond the first per message
    messages_sent_twice_or_more: int
    seconds_from_due: float

    @property
    def mps(self) -> float:
        return self.unique / self.seconds_from_due if self.seconds_from_due > 0 else 0.0


def _naive(bench: Bench, spec: WorkerSpec, messages: int, countdown: float) -> Naive:
    bench.control.reset()
    run = uuid.uuid4().hex[:8]
    with private_redis() as broker:
        settings = bench.settings.model_copy(update={"broker_url": broker.url, "redis_url": broker.url})
        log_dir = bench.log_dir / "naive"
        log_dir.mkdir()
        with stack(environment(settings), log_dir) as processes:
            for n in (1, 2):
                _start_worker(processes, f"naive{n}", spec, app="bench.naive_eta")
            producer = naive_eta.make_app(settings)
            first_due = time.time() + countdown
            for n in range(messages):
                # The tutorial's way: the broker holds the message until it is due.
                producer.send_task(naive_eta.SEND_TASK, args=(run, n), countdown=countdown)
            producer.close()
            last_due = time.time() + countdown

            def quiet() -> bool:
                # Done when every message went out and no accept has arrived for 3 s.
                if time.time() < last_due + 3:
                    return False
                counts = bench.control.accepts()
                seen = bench.control.messages()
                latest = max((m.accepted_at.timestamp() for m in seen), default=0.0)
                unique = sum(1 for entry in counts.by_to_body if entry.count >= 1)
                return unique >= messages and time.time() - latest > 3

            wait_for(quiet, timeout=countdown + 90, interval=0.5, what="the naive sends to settle")
    counts = bench.control.accepts()
    seen = bench.control.messages()
    last_accept = max(m.accepted_at.timestamp() for m in seen)
    unique = len(counts.by_to_body)
    return Naive(
        messages=messages,
        countdown=countdown,
        visibility_timeout=naive_eta.VISIBILITY_TIMEOUT,
        unique=unique,
        accepts=counts.total,
        duplicates=counts.total - unique,
        messages_sent_twice_or_more=len(counts.duplicates),
        seconds_from_due=last_accept - first_due,
    )


# ---- the run -------------------------------------------------------------------------------


@dataclass
class Figures:
    spec: WorkerSpec
    throughput: list[Throughput]
    lag: Lag | None
    rate: RateRun | None
    naive: Naive | None
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def run(
    *,
    messages: int = 20_000,
    window: float = 20.0,
    lag_messages: int = 300,
    lag_spread: float = 30.0,
    spec: WorkerSpec | None = None,
    phases: frozenset[str] = PHASES,
    log: Callable[[str], None] = lambda _: None,
) -> Figures:
    spec = spec or WorkerSpec()
    for problem in (services.ensure_postgres(), services.ensure_redis()):
        if problem:
            raise RuntimeError(problem)
    load_before = os.getloadavg()
    url = services.create_pg_database("outreach_bench_delivery")
    engine = make_engine(url)
    log_dir = Path(tempfile.mkdtemp(prefix="delivery-bench-"))
    try:
        upgrade(url)
        contact_ids = _seed_contacts(url, max(messages, lag_messages, RATE_MESSAGES))
        settings = bench_settings(url, free_port())
        with running_sandbox(settings, mode="process", sandbox_status_callbacks=False) as sandbox:
            bench = Bench(
                settings=sandbox.settings,
                control=sandbox.control,
                factory=make_session_factory(engine),
                contact_ids=contact_ids,
                log_dir=log_dir,
                log=log,
            )
            results: list[Throughput] = []
            lag: Lag | None = None
            if phases & {"throughput", "lag"}:
                with _stack(bench, "pipeline") as processes:
                    processes.start_beat("beat1")
                    queues = "sends" if spec.control_apart else "all"
                    if spec.control_apart:
                        control = WorkerSpec(spec.pool, CONTROL_PROCESSES)
                        _start_worker(processes, "control", control, queues="control")
                    _start_worker(processes, "worker1", spec, queues=queues)
                    if "throughput" in phases:
                        results.append(_throughput(bench, 1, messages, window))
                        log(f"1 worker: {results[-1].mps:,.0f} msgs/s")
                    _start_worker(processes, "worker2", spec, queues=queues)
                    if "throughput" in phases:
                        results.append(_throughput(bench, 2, messages, window))
                        log(f"2 workers: {results[-1].mps:,.0f} msgs/s")
                    if "lag" in phases:
                        lag = _lag(bench, lag_messages, lag_spread)
                        log(f"lag p50 {lag.p50 * 1000:.0f} ms, p99 {lag.p99 * 1000:.0f} ms")
            rate_run = _rate(bench, spec) if "rate" in phases else None
            naive_run = _naive(bench, spec, NAIVE_MESSAGES, NAIVE_COUNTDOWN) if "naive" in phases else None
        return Figures(spec, results, lag, rate_run, naive_run, load_before, os.getloadavg())
    finally:
        engine.dispose()
        services.drop_pg_database(url)
        shutil.rmtree(log_dir, ignore_errors=True)


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def report(figures: Figures) -> Pairs:
    out: Pairs = [("workers", f"{figures.spec.label()} per process (Celery pool x concurrency)")]
    for t in figures.throughput:
        out.append(
            (
                f"throughput, {t.workers} worker{'s' if t.workers > 1 else ''}",
                f"{t.mps:,.0f} msgs/s ({t.messages:,} of {t.made_due:,} due sent in {t.seconds:.1f} s; "
                f"{t.steady_mps:,.0f} msgs/s first->last accept; load {t.load:.1f}; "
                f"{_verdict(t.mps >= GOAL_MPS)} {GOAL_MPS:,.0f})",
            )
        )
    for t in figures.throughput:
        if t.cpu and t.messages:
            parts = ", ".join(
                f"{group} {seconds / t.messages * 1000:.2f}"
                for group, seconds in sorted(t.cpu.items(), key=lambda item: -item[1])
            )
            total = sum(t.cpu.values()) / t.messages * 1000
            out.append(
                (
                    f"CPU per msg, {t.workers} worker{'s' if t.workers > 1 else ''}",
                    f"{total:.2f} ms: {parts} (ms of CPU per message sent in the window)",
                )
            )
    if figures.lag:
        lag = figures.lag
        ok = lag.p50 <= GOAL_LAG_P50 and lag.p99 <= GOAL_LAG_P99
        out.append(
            (
                "scheduling lag",
                f"p50 {lag.p50 * 1000:.0f} ms, p99 {lag.p99 * 1000:.0f} ms, max {lag.worst * 1000:.0f} ms "
                f"({lag.messages} msgs over {lag.spread:.0f} s, due -> provider accept; "
                f"{_verdict(ok)} p50 <= 50 ms, p99 <= 1 s)",
            )
        )
    if figures.rate:
        r = figures.rate
        ok = r.busiest_window <= r.mps and r.utilisation >= GOAL_UTILISATION
        out.append(
            (
                "rate limit, end to end",
                f"busiest 1 s window {r.busiest_window} at {r.mps:.0f} MPS, {r.utilisation:.1%} of capacity "
                f"used ({r.messages} msgs in {r.seconds:.1f} s, 2 workers, "
                f"shortest gap {r.gap_min_ms:.0f} ms; "
                f"{_verdict(ok)} <= MPS, >= 95%)",
            )
        )
    if figures.naive:
        n = figures.naive
        out.append(
            (
                "naive ETA baseline",
                f"{n.mps:,.0f} msgs/s ({n.unique:,} of {n.messages:,} sent, last "
                f"{n.seconds_from_due:.1f} s after the first was due)",
            )
        )
        out.append(
            (
                "naive ETA duplicates",
                f"{n.duplicates:,} extra sends ({n.accepts:,} accepts for {n.unique:,} messages; "
                f"{n.messages_sent_twice_or_more:,} sent more than once; countdown {n.countdown:.0f} s, "
                f"visibility_timeout {n.visibility_timeout:.0f} s)",
            )
        )
    before, after = figures.load_before, figures.load_after
    out.append(
        ("machine load", f"{before[0]:.2f} before, {after[0]:.2f} after (1-min load average, 2 cores)")
    )
    return out


def pairs(**sizes: Any) -> Pairs:
    """The figures for `make bench` (bench/__main__.py); ``sizes`` as for ``run``."""
    return report(run(**sizes))


def limiter_pairs() -> Pairs:
    """Engineer E's limiter benchmark on Redis, for `make bench` (bench/__main__.py)."""
    if problem := services.ensure_redis():
        raise RuntimeError(problem)
    mps = 20.0
    figures = ratelimit_bench.run("redis", services.REDIS_URL, mps=mps, seconds=5.0, processes=2, threads=3)
    out: Pairs = []
    for label, p in (("granted", figures.granted), ("used", figures.used)):
        ok = p.busiest_window <= mps and p.utilisation >= GOAL_UTILISATION
        out.append(
            (
                f"slots {label}",
                f"busiest 1 s window {p.busiest_window} at {mps:.0f} MPS, {p.utilisation:.1%} of capacity "
                f"({p.sends} in {p.seconds:.0f} s, 2 processes x 3 threads; {_verdict(ok)})",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000, help="rows made due per throughput run")
    parser.add_argument("--window", type=float, default=20.0, help="seconds a throughput run may take")
    parser.add_argument("--lag-messages", type=int, default=300)
    parser.add_argument("--lag-spread", type=float, default=30.0)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    parser.add_argument("--concurrency", type=int, default=0, help="0: the worker's default")
    parser.add_argument(
        "--control-apart", action="store_true", help="send workers and a control worker, as in production"
    )
    parser.add_argument(
        "--phases",
        default=",".join(sorted(PHASES)),
        help="comma-separated subset of: " + ", ".join(sorted(PHASES)),
    )
    args = parser.parse_args()
    started = time.perf_counter()
    figures = run(
        messages=args.messages,
        window=args.window,
        lag_messages=args.lag_messages,
        lag_spread=args.lag_spread,
        spec=WorkerSpec(args.pool, args.concurrency, args.control_apart),
        phases=frozenset(args.phases.split(",")),
        log=lambda line: print(f"  .. {line}", flush=True),
    )
    for what, figure in report(figures):
        print(f"  {what:<24} {figure}")
    print(f"  ({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
