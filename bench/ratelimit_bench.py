"""Rate-limit precision: many processes and threads hammer one sender's limiter.

Each worker loops: take a slot (``acquire``), sleep until it, record the instant it would
have called the provider. The figures are the busiest 1-second window (must not exceed the
configured MPS) and the share of capacity used (goal: >= 95%).

    .venv/bin/python -m bench.ratelimit_bench --backend redis --mps 20 --seconds 5
    .venv/bin/python -m bench.ratelimit_bench --backend postgresql --database-url postgresql+psycopg://...
    .venv/bin/python -m bench.ratelimit_bench --backend sqlite   # a fresh, migrated temporary file

Prints one JSON document. ``run(...)`` returns the same figures for bench/__main__.py.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context

import redis

from outreach.db import make_engine, make_session_factory
from outreach.delivery.ratelimit import DatabaseRateLimiter, RateLimiter, RedisRateLimiter
from outreach.migrate import upgrade
from outreach.models.base import utcnow
from tests.support.services import REDIS_URL


@dataclass(frozen=True)
class LoadSpec:
    backend: str  # "redis" | "database"
    url: str  # Redis URL or database URL
    sender: str
    mps: float
    start_at: float  # wall-clock instant every worker starts (processes spawn at different speeds)
    stop_at: float
    threads: int
    max_wait: float = 1.0
    key_prefix: str = "outreach:bench:"


def _limiter(spec: LoadSpec) -> RateLimiter:
    def rate_for(_sender: str) -> float:
        return spec.mps

    if spec.backend == "redis":
        return RedisRateLimiter(redis.Redis.from_url(spec.url), rate_for, key_prefix=spec.key_prefix)
    engine = make_engine(spec.url, pool_size=spec.threads + 1)
    return DatabaseRateLimiter(make_session_factory(engine), rate_for)


def hammer(spec: LoadSpec) -> tuple[list[float], list[float]]:
    """One process's share of the load: ``spec.threads`` threads.

    Returns the slots granted and the instants the callers woke to use them (epoch seconds).
    """
    limiter = _limiter(spec)
    slots: list[float] = []
    sent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        time.sleep(max(0.0, spec.start_at - time.time()))
        while time.time() < spec.stop_at:
            slot = limiter.reserve(spec.sender, utcnow(), max_wait=spec.max_wait)
            if not slot.taken:
                time.sleep(min(slot.wait - spec.max_wait, 0.25))  # a real caller would reschedule
                continue
            if slot.wait > 0:
                time.sleep(slot.wait)
            instant = time.time()
            with lock:
                slots.append(slot.at)
                sent.append(instant)

    threads = [threading.Thread(target=worker) for _ in range(spec.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return slots, sent


@dataclass(frozen=True)
class Precision:
    mps: float
    seconds: float
    sends: int
    busiest_window: int  # most sends in any 1-second window [t, t+1)
    utilisation: float  # sends in the measured span / (mps x span)
    gap_min_ms: float
    gap_p50_ms: float


@dataclass(frozen=True)
class RatePrecision:
    # The slots the limiter handed out: its own promise, free of the machine's scheduling.
    granted: Precision
    # When callers actually woke to send: adds sleep overrun on a busy machine.
    used: Precision


def analyse(instants: list[float], mps: float, start: float, stop: float) -> Precision:
    """Figures over sends in [start, stop); the window check slides over every send."""
    times = sorted(t for t in instants if start <= t < stop)
    busiest = 0
    for i, t in enumerate(times):
        busiest = max(busiest, bisect.bisect_left(times, t + 1.0) - i)
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    span = stop - start
    return Precision(
        mps=mps,
        seconds=span,
        sends=len(times),
        busiest_window=busiest,
        utilisation=len(times) / (mps * span) if span > 0 else 0.0,
        gap_min_ms=gaps[0] * 1000 if gaps else 0.0,
        gap_p50_ms=gaps[len(gaps) // 2] * 1000 if gaps else 0.0,
    )


def run(
    backend: str,
    url: str,
    *,
    mps: float = 20.0,
    seconds: float = 3.0,
    processes: int = 2,
    threads: int = 3,
    warmup: float = 2.5,
    settle: float = 0.5,
) -> RatePrecision:
    """Spawn ``processes`` x ``threads`` callers on one fresh sender and measure them.

    The first ``settle`` seconds of load are not measured (processes connecting, first
    queries), then ``seconds`` are.
    """
    start_at = time.time() + warmup
    measured_from = start_at + settle
    spec = LoadSpec(
        backend=backend,
        url=url,
        sender=f"bench-{uuid.uuid4().hex[:12]}",
        mps=mps,
        start_at=start_at,
        stop_at=measured_from + seconds,
        threads=threads,
    )
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(hammer, [spec] * processes))
    slots = [t for result in results for t in result[0]]
    woke = [t for result in results for t in result[1]]
    stop = measured_from + seconds
    return RatePrecision(
        granted=analyse(slots, mps, measured_from, stop), used=analyse(woke, mps, measured_from, stop)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["redis", "postgresql", "sqlite"], default="redis")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--mps", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=3)
    args = parser.parse_args()
    if args.backend == "redis":
        backend, url = "redis", args.redis_url
    else:
        url = args.database_url
        if not url and args.backend == "sqlite":
            url = f"sqlite:///{tempfile.mkdtemp(prefix='ratelimit-bench-')}/bench.sqlite"
            upgrade(url)
        if not url:
            parser.error("--database-url is required for postgresql (a migrated database)")
        backend = "database"
    figures = run(
        backend, url, mps=args.mps, seconds=args.seconds, processes=args.processes, threads=args.threads
    )
    print(json.dumps({"benchmark": "ratelimit", "backend": args.backend, **asdict(figures)}))


if __name__ == "__main__":
    main()
