"""How fast the machine is in this hour: fixed work, timed before and after a run.

On the 2-core VMs the benchmarks run on, the same code gives figures up to twice apart from
one hour to the next (docs/benchmarks.md): the host's other tenants. These two timings, of
work no change to the project touches, place a run's figures in its hour: compare runs whose
speed lines agree, or read a change's effect from alternating runs of one hour.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import psycopg

from tests.support.services import PG_ADMIN_URL, libpq

# A sum over generated rows: one backend's CPU, nothing read from disk or written.
_QUERY = "SELECT sum(x % 7) FROM generate_series(1, 1000000) AS x"


def _python_work() -> int:
    # Interpreted arithmetic and a dict, as the project's hot paths are mostly interpreter time.
    seen: dict[int, int] = {}
    total = 0
    for i in range(1_200_000):
        total += (i * i) % 7
        seen[i % 1024] = total
    return total + len(seen)


def _best_ms(work: Callable[[], object], tries: int = 3) -> float:
    best = math.inf
    for _ in range(tries):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def python_ms() -> float:
    """The fixed Python work's best time of three, in ms."""
    return _best_ms(_python_work)


def postgres_ms(admin_url: str = PG_ADMIN_URL) -> float | None:
    """The fixed query's best time of three on the server, in ms; None when it is not answering."""
    try:
        with psycopg.connect(libpq(admin_url), connect_timeout=3, autocommit=True) as conn:
            return _best_ms(lambda: conn.execute(_QUERY).fetchone())
    except psycopg.OperationalError:
        return None


def measure() -> dict[str, float | None]:
    """Both timings now, as ``describe`` and bench/results.json take them."""
    return {"python_ms": python_ms(), "postgres_ms": postgres_ms()}


def describe(before: Mapping[str, float | None], after: Mapping[str, float | None]) -> str:
    """The table's speed line: each timing before and after the run (lower is faster)."""

    def pair(key: str) -> str:
        first, last = before.get(key), after.get(key)
        if first is None or last is None:
            return "not measured"
        return f"{first:.0f} ms before, {last:.0f} after"

    return (
        f"machine speed: fixed Python work {pair('python_ms')}; fixed PostgreSQL query "
        f"{pair('postgres_ms')} (best of 3, lower is faster; bench/speed.py)"
    )
