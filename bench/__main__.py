"""`make bench`: every benchmark, one table with each figure beside its goal, and
bench/results.json with the same rows, the machine's CPU model, its load and its speed in this
hour (fixed work timed before and after: bench/speed.py).

Each area adds one line to BENCHES: a name and a function of ``quick`` returning (what, figure)
pairs. `python -m bench NAME...` runs only the named ones; `--quick` (`make bench QUICK=1`)
runs small sizes in under two minutes, to check the harness, not to judge the goals.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    api_bench,
    callbacks_bench,
    crisis_bench,
    delivery_bench,
    enroll_bench,
    import_bench,
    memory_bench,
    speed,
    web_bench,
    webhook_bench,
)

Pairs = list[tuple[str, str]]
Bench = Callable[[bool], Pairs]
RESULTS = Path(__file__).resolve().parent / "results.json"

BENCHES: list[tuple[str, Bench]] = [
    ("contacts-import", lambda quick: import_bench.run(5_000, 100) if quick else import_bench.run()),
    ("enroll", lambda quick: enroll_bench.pairs(10_000 if quick else 100_000)),
    (
        "delivery",
        lambda quick: (
            delivery_bench.pairs(
                messages=500,
                window=6.0,
                lag_messages=30,
                lag_spread=3.0,
                phases=frozenset({"throughput", "lag"}),
            )
            if quick
            else delivery_bench.pairs()
        ),
    ),
    (
        "callbacks",
        lambda quick: callbacks_bench.pairs(500, 10.0) if quick else callbacks_bench.pairs(),
    ),
    ("ratelimit", lambda quick: [] if quick else delivery_bench.limiter_pairs()),
    (
        "crisis",
        lambda quick: (
            # One stack, not two: the quick run stays under two minutes on the slower machine.
            crisis_bench.pairs(300, 1, mps=1.0)
            if quick
            else crisis_bench.pairs() + crisis_bench.pairs(2_000, 10, mps=1.0)
        ),
    ),
    ("memory", lambda quick: memory_bench.pairs(10_000, 2, 500) if quick else memory_bench.pairs()),
    ("web", lambda quick: web_bench.run(10_000, 5) if quick else web_bench.run()),
    ("api", lambda quick: api_bench.pairs(10_000, 300) if quick else api_bench.pairs()),
    ("webhooks", lambda quick: webhook_bench.pairs(200, 200, (1,), 0) if quick else webhook_bench.pairs()),
]

# The goal beside each figure (docs/benchmarks.md); figures without one are context.
GOALS = {
    "postgresql empty db": "<= 4 s for 100k rows",
    "postgresql speed-up": ">= 3x the naive import",
    "enroll 100k x 5 steps": "<= 4 s on PostgreSQL",
    "throughput, 1 worker": ">= 1,000 msgs/s",
    "throughput, 2 workers": ">= 1,000 msgs/s",
    "CPU per msg, 1 worker": "<= 1.5 ms",
    "CPU per msg, 2 workers": "<= 1.5 ms",
    "scheduling lag": "p50 <= 50 ms, p99 <= 1 s",
    "rate limit, end to end": "busiest second <= MPS, >= 95% used",
    "naive ETA baseline": "pipeline >= 3x faster",
    "naive ETA duplicates": "(the baseline's; ours: 0)",
    "slots granted": "<= MPS, >= 95% used",
    "slots used": "<= MPS, >= 95% used",
    "crisis reply under load": "p99 <= 2 s over 20 trials",
    "crisis reply at 1 MPS": "p99 <= 2 s",
    "worker memory": "<= 150 MB per process, flat",
    "status callbacks, 1 process": ">= 1,000 req/s, p99 <= 50 ms",
    "inbound SMS, 1 process": ">= 1,000 req/s, p99 <= 50 ms",
    "throughput, status callbacks on": ">= 1,000 msgs/s, each delivered <= 5 s",
    "crisis reply, callbacks on": "<= 2 s",
}
# Goals that no benchmark measures yet: listed so the table shows the gap.
NOT_MEASURED: list[tuple[str, str, str]] = []


def machine() -> dict[str, object]:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load": list(os.getloadavg()),
        "python": platform.python_version(),
        "speed": speed.measure(),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quick = "--quick" in args
    wanted = {a for a in args if a != "--quick"}
    unknown = wanted - {name for name, _ in BENCHES}
    if unknown:
        known = ", ".join(name for name, _ in BENCHES)
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {known}", file=sys.stderr)
        return 2
    before = machine()
    started = datetime.now(UTC)
    rows: list[dict[str, str]] = []
    for name, bench in BENCHES:
        if wanted and name not in wanted:
            continue
        print(f"running {name}{' (quick)' if quick else ''} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            pairs = bench(quick)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            pairs = [("failed", f"{type(exc).__name__}: {exc}")]
        if pairs:
            pairs.append(("time taken", f"{time.perf_counter() - start:.0f} s"))
        rows += [
            {"bench": name, "what": what, "figure": figure, "goal": GOALS.get(what, "")}
            for what, figure in pairs
        ]
    if not wanted:
        rows += [{"bench": b, "what": w, "figure": "not measured", "goal": g} for b, w, g in NOT_MEASURED]
    after = machine()
    RESULTS.write_text(
        json.dumps(
            {
                "started_at": started.isoformat(timespec="seconds"),
                "quick": quick,
                "machine": {**before, "load_after": after["load"], "speed_after": after["speed"]},
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(_table(rows, before, after, quick))
    print(f"(written to {RESULTS})")
    return 0


def _table(
    rows: list[dict[str, str]], before: dict[str, object], after: dict[str, object], quick: bool
) -> str:
    load_before, load_after = before["load"], after["load"]
    assert isinstance(load_before, list) and isinstance(load_after, list)
    lines = [
        f"machine: {before['cpu']}, {before['cores']} cores; 1-min load {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after",
        speed.describe(_speed(before), _speed(after)),
    ]
    if quick:
        lines.append("QUICK run: small sizes, figures check the harness only; goals are for the full sizes")
    widths = [max(len(r[k]) for r in rows) if rows else 0 for k in ("bench", "what", "goal")]
    for row in rows:
        bench, what, goal = row["bench"], row["what"], row["goal"]
        lines.append(f"{bench:<{widths[0]}}  {what:<{widths[1]}}  {goal:<{widths[2]}}  {row['figure']}")
    return "\n".join(lines)


def _speed(machine: dict[str, object]) -> dict[str, float | None]:
    timings = machine["speed"]
    assert isinstance(timings, dict)
    return timings


if __name__ == "__main__":
    sys.exit(main())
