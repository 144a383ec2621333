"""A load generator for the webhooks, in a process of its own so it never measures itself.

Reads a JSON job from stdin: the base URL, and a list of requests (path with query, form
fields, signature) built and signed beforehand; posts them over ``concurrency`` keep-alive
connections with aiohttp, at most ``seconds`` long; prints one JSON line: how many were sent
and answered 200, the span, and latency percentiles in seconds. Loopback only.

    echo '{"base": "http://127.0.0.1:8000", "concurrency": 32, "seconds": 60,
           "requests": [["/webhooks/twilio/status?c=...", {"MessageSid": ...}, "sig"]]}' \
        | python -m bench.loadgen
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


async def _fire(job: dict[str, Any]) -> dict[str, Any]:
    base: str = job["base"]
    if urlsplit(base).hostname not in LOOPBACK:
        raise SystemExit("loadgen posts to loopback only")
    requests: list[tuple[str, dict[str, str], str]] = [(r[0], r[1], r[2]) for r in job["requests"]]
    concurrency: int = job["concurrency"]
    stop_at = time.perf_counter() + float(job["seconds"])
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    cursor = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def worker() -> None:
            for path, form, signature in cursor:
                if time.perf_counter() >= stop_at:
                    return
                began = time.perf_counter()
                async with session.post(path, data=form, headers={"X-Twilio-Signature": signature}) as answer:
                    await answer.read()
                latencies.append(time.perf_counter() - began)
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        span = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        "sent": len(latencies),
        "ok": statuses.get(200, 0),
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": span,
        "rps": len(latencies) / span if span > 0 else 0.0,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "max": latencies[-1] if latencies else 0.0,
    }


def main() -> None:
    job = json.load(sys.stdin)
    print(json.dumps(asyncio.run(_fire(job))))


if __name__ == "__main__":
    main()
