"""Worker memory with a million scheduled messages: each worker process's RSS while it claims
and sends must stay flat and under 150 MB.

Real processes, as in ``bench.delivery_bench`` (whose helpers it uses): PostgreSQL, the local
Redis, the sandbox in its own process, one beat and one worker with its default pool. The
outbox holds ``scheduled`` rows (1M by default, written in SQL, not measured) due over the
coming days, and waves of ``wave`` rows fall due at once, one after another, so the worker
claims and sends for the whole run with the big table underneath. The RSS of every worker
process (the Celery main process and each pool child) is read from /proc twice a second.
Reported: the largest RSS of any process, and its growth from the end of the first wave to the
end of the last (a leak grows wave after wave; start-up allocation does not).

    .venv/bin/python -m bench.memory_bench [--scheduled 1000000] [--waves 5] [--wave 20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psycopg
from sqlalchemy import update

from bench import delivery_bench
from bench.delivery_bench import Bench, WorkerSpec
from outreach.db import make_engine, make_session_factory
from outreach.migrate import upgrade
from outreach.models import Message, MessageState, utcnow
from tests.support import services
from tests.support.processes import free_port
from tests.support.sandbox import running_sandbox
from tests.support.waiting import wait_for

GOAL_MB = 150.0
SAMPLE_EVERY = 0.5
Pairs = list[tuple[str, str]]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _family(pid: int) -> list[int]:
    """The process and its descendants (a Celery worker and its pool children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


@dataclass
class Samples:
    """RSS in MB per worker process, sampled until stopped; marks split the run into waves."""

    root: int
    series: dict[int, list[float]] = field(default_factory=dict)
    marks: list[int] = field(default_factory=list)  # sample counts at the end of each wave
    count: int = 0

    def take(self) -> None:
        for pid in _family(self.root):
            rss = _rss_mb(pid)
            if rss is not None:
                self.series.setdefault(pid, []).append(rss)
        self.count += 1

    def mark(self) -> None:
        self.marks.append(self.count)


@contextmanager
def _sampling(root: int) -> Iterator[Samples]:
    samples = Samples(root)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(SAMPLE_EVERY):
            samples.take()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def _schedule(url: str, contact_ids: list[int], count: int) -> None:
    """``count`` scheduled SMS rows due over the next 30 days, straight in SQL."""
    low, high = contact_ids[0], contact_ids[-1]
    with psycopg.connect(services.libpq(url)) as conn:
        conn.execute(
            """INSERT INTO messages (idempotency_key, contact_id, channel, category, kind, body_override,
                                     context, due_at, state, attempts, max_attempts, created_at, updated_at)
               SELECT 'scheduled:' || n, %s + n %% (%s - %s + 1), 'sms', 'care', 'system',
                      'A scheduled message from your clinic.', '{}',
                      now() + interval '1 day' + (n %% 43200) * interval '1 minute',
                      'scheduled', 0, 5, now(), now()
               FROM generate_series(1, %s) AS n""",
            (low, high, low, count),
        )
        conn.execute("ANALYZE messages")


def _wave(bench: Bench, size: int) -> None:
    tag = bench.tag("wave")
    delivery_bench._insert(bench, tag, [utcnow() + timedelta(days=60)] * size)
    with bench.factory.begin() as session:
        moved = update(Message).where(delivery_bench._of(bench, tag)).values(due_at=utcnow())
        session.execute(moved.execution_options(synchronize_session=False))

    def sent() -> bool:
        return delivery_bench._states(bench, tag).get(MessageState.SENT, 0) >= size

    wait_for(sent, timeout=300, interval=1.0, what=f"{tag} to be sent")
    bench.control.reset()


@dataclass(frozen=True)
class Memory:
    processes: int
    peak_mb: float  # the largest RSS of any worker process
    growth_mb: float  # the largest rise of one process from the end of the first wave to the last
    sent: int


def run(
    *,
    scheduled: int = 1_000_000,
    waves: int = 5,
    wave: int = 20_000,
    log: Callable[[str], None] = lambda _: None,
) -> Memory:
    for problem in (services.ensure_postgres(), services.ensure_redis()):
        if problem:
            raise RuntimeError(problem)
    url = services.create_pg_database("outreach_bench_memory")
    engine = make_engine(url)
    log_dir = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    try:
        upgrade(url)
        contact_ids = delivery_bench._seed_contacts(url, wave)
        _schedule(url, contact_ids, scheduled)
        log(f"{scheduled:,} scheduled")
        settings = delivery_bench.bench_settings(url, free_port())
        with running_sandbox(settings, mode="process", sandbox_status_callbacks=False) as sandbox:
            factory = make_session_factory(engine)
            bench = Bench(sandbox.settings, sandbox.control, factory, contact_ids, log_dir, log)
            with delivery_bench._stack(bench, "memory") as processes:
                processes.start_beat("beat1")
                delivery_bench._start_worker(processes, "worker1", WorkerSpec())
                with _sampling(processes.processes["worker1"].pid) as samples:
                    for n in range(waves):
                        _wave(bench, wave)
                        samples.mark()
                        log(f"wave {n + 1} sent")
        return _summary(samples, waves * wave)
    finally:
        engine.dispose()
        services.drop_pg_database(url)
        shutil.rmtree(log_dir, ignore_errors=True)


def _summary(samples: Samples, sent: int) -> Memory:
    first, last = samples.marks[0], samples.marks[-1]
    growth = [
        max(series[first - 1 : last]) - series[first - 1]
        for series in samples.series.values()
        if len(series) >= last
    ]
    return Memory(
        processes=len(samples.series),
        peak_mb=max(max(series) for series in samples.series.values()),
        growth_mb=max(growth, default=0.0),
        sent=sent,
    )


def pairs(scheduled: int = 1_000_000, waves: int = 5, wave: int = 20_000) -> Pairs:
    load = os.getloadavg()[0]
    memory = run(scheduled=scheduled, waves=waves, wave=wave)
    verdict = "meets" if memory.peak_mb <= GOAL_MB else "MISSES"
    return [
        (
            "worker memory",
            f"peak RSS {memory.peak_mb:.0f} MB of {memory.processes} worker processes, "
            f"+{memory.growth_mb:.1f} MB from wave 1 to wave {waves}, {scheduled:,} scheduled, "
            f"{memory.sent:,} sent ({verdict} the goal, load {load:.1f} before)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduled", type=int, default=1_000_000)
    parser.add_argument("--waves", type=int, default=5)
    parser.add_argument("--wave", type=int, default=20_000)
    args = parser.parse_args()
    for what, figure in pairs(args.scheduled, args.waves, args.wave):
        print(f"{what:<16} {figure}")


if __name__ == "__main__":
    main()
