"""`make bench`: every benchmark, figures printed as a table.

Each area adds one line to BENCHES: a name and a function returning (what, figure) pairs.
`python -m bench NAME...` runs only the named ones.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from bench import api_bench, delivery_bench, enroll_bench, import_bench

Bench = Callable[[], list[tuple[str, str]]]

BENCHES: list[tuple[str, Bench]] = [
    ("contacts-import", import_bench.run),
    ("enroll", enroll_bench.pairs),
    ("delivery", delivery_bench.pairs),
    ("ratelimit", delivery_bench.limiter_pairs),
    ("api", api_bench.pairs),
]


def main(argv: list[str] | None = None) -> int:
    wanted = set(sys.argv[1:] if argv is None else argv)
    unknown = wanted - {name for name, _ in BENCHES}
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; "
              f"known: {', '.join(name for name, _ in BENCHES)}", file=sys.stderr)
        return 2
    for name, bench in BENCHES:
        if wanted and name not in wanted:
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        for what, figure in bench():
            print(f"  {what:<24} {figure}", flush=True)
        print(f"  ({time.perf_counter() - start:.0f} s in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
