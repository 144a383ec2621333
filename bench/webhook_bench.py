"""Webhook ingest: signed Twilio callbacks into `outreach serve`, one and two web processes.

What production sends: status callbacks (``delivered``) for messages that exist and were just
sent, and inbound SMS from known patients (each stored, classified and handed to a Celery
task on Redis): ordinary replies, which are stored with the others arriving at the same
moment, and, on one process, STOPs, each stored on its own with the patient's contacts locked
and the opt-out applied before the answer (no goal of their own: they are a small share).
The load comes from aiohttp in a process of its own (32 connections, every
request signed with the account's token over the public URL, as Twilio signs); the web
process is ``outreach serve`` configured only through OUTREACH_* variables, on PostgreSQL.
A status callback is stored by the webhook and applied by the worker: after the load, the
bench applies what was stored the way the worker's task does and reports that rate too.
A warm-up of a few hundred requests is not measured. Nothing consumes the inbound tasks:
their queue is this run's own and is deleted afterwards.

Goal (the webhook-ingest issue): >= 1,000 req/s of each on one web process, p99 <= 50 ms.

    python -m bench.webhook_bench [--status N] [--inbound N] [--stops N] [--processes 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import redis
from twilio.request_validator import RequestValidator

from bench.seed import grant_consent
from bench.stats import percentile
from outreach.db import make_engine, make_session_factory
from outreach.delivery import status
from outreach.migrate import upgrade
from outreach.models import utcnow
from tests.support import services
from tests.support.e2e import environment, system_settings
from tests.support.processes import free_port, stack
from tests.support.waiting import wait_for

CONNECTIONS = 32
WARM_UP = 300
CLINIC_NUMBER = "+19255550100"

LOAD = r"""
import asyncio, json, sys, time
import aiohttp

async def main(base, path_of_requests, connections):
    with open(path_of_requests) as source:
        requests = json.load(source)
    latencies, failures = [], []
    pending = iter(requests)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one_connection():
            for path, body, signature in pending:
                started = time.perf_counter()
                headers = {"X-Twilio-Signature": signature,
                           "Content-Type": "application/x-www-form-urlencoded"}
                async with session.post(base + path, data=body, headers=headers) as answer:
                    await answer.read()
                    if answer.status >= 300:
                        failures.append(answer.status)
                latencies.append(time.perf_counter() - started)
        began = time.perf_counter()
        await asyncio.gather(*(one_connection() for _ in range(connections)))
        seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "latencies": latencies, "failures": failures[:5],
                      "failed": len(failures)}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@dataclass(frozen=True)
class Ingest:
    kind: str
    processes: int
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    # Status callbacks only: how fast one worker process applies what the webhook stored.
    applied_per_second: float | None = None


def _sid(prefix: str, n: int) -> str:
    return f"SM{prefix}{n:0{32 - len(prefix)}x}"


def _seed(url: str, count: int) -> None:
    """``count`` contacts with SMS consent, each with one SMS sent a moment ago (its provider id
    known)."""
    sent = utcnow() - timedelta(seconds=5)
    with psycopg.connect(services.libpq(url)) as conn:
        conn.execute(
            """INSERT INTO contacts (external_id, first_name, last_name, phone, timezone, language,
                                     created_at, updated_at)
               SELECT 'MRN-' || n, 'Pat', 'Doe', '+1415' || lpad(n::text, 7, '0'),
                      'America/Los_Angeles', 'en', %(at)s, %(at)s
               FROM generate_series(1, %(n)s) AS n""",
            {"n": count, "at": sent},
        )
        conn.execute(
            """INSERT INTO messages (idempotency_key, contact_id, channel, category, kind, template,
                                     context, to_address, body, state, attempts, max_attempts,
                                     due_at, sent_at, provider_id, created_at, updated_at)
               SELECT 'bench:' || id, id, 'sms', 'care', 'automated', 'bench', '{}', phone,
                      'Your visit is on Friday.', 'sent', 1, 3, %(at)s, %(at)s,
                      'SMa' || lpad(to_hex(id), 31, '0'), %(at)s, %(at)s
               FROM contacts""",
            {"at": sent},
        )
        # As the clinic's patients have: what a STOP revokes.
        grant_consent(conn, ["sms"], ["care", "education"])
        conn.execute("ANALYZE")


def _requests(
    kind: str, numbers: range, base: str, token: str, contact_ids: Sequence[int]
) -> list[list[str]]:
    """Signed (path, body, signature) triples; inbound texts ``numbers`` get distinct ids."""
    validator = RequestValidator(token)
    made: list[list[str]] = []
    for n in numbers:
        contact = contact_ids[n % len(contact_ids)]
        if kind == "status":
            path = "/webhooks/twilio/status"
            form = {"MessageSid": _sid("a", contact), "MessageStatus": "delivered",
                    "AccountSid": "AC" + "1f" * 16, "To": f"+1415{contact:07d}"}
        else:
            path = "/webhooks/twilio/sms"
            form = {"MessageSid": _sid("b", n), "AccountSid": "AC" + "1f" * 16,
                    "From": f"+1415{contact:07d}", "To": CLINIC_NUMBER,
                    "Body": "STOP" if kind == "stop" else "Thanks, see you on Friday", "NumMedia": "0"}
        made.append([path, urlencode(form), validator.compute_signature(base + path, form)])
    return made


def _drive(base: str, requests: list[list[str]], workdir: Path) -> dict[str, object]:
    file = workdir / f"requests-{uuid.uuid4().hex[:6]}.json"
    file.write_text(json.dumps(requests))
    done = subprocess.run(
        [sys.executable, "-c", LOAD, base, str(file), str(CONNECTIONS)],
        capture_output=True, text=True, check=False, timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr.strip().splitlines()[-1:]}")
    figures: dict[str, object] = json.loads(done.stdout)
    if figures["failed"]:
        raise RuntimeError(f"{figures['failed']} webhooks were refused, e.g. HTTP {figures['failures']}")
    return figures


def _spawned(parent: int) -> list[int]:
    """The processes uvicorn's supervisor started for ``parent`` (multiprocessing's spawn)."""
    found = []
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
        except OSError:
            continue
    return found


def _check_applied(url: str, kind: str, expected: int) -> None:
    """Every callback did its work: a message delivered, an inbound text stored, a patient
    opted out."""
    query = {
        "status": "SELECT count(*) FROM messages WHERE state = 'delivered'",
        "inbound": "SELECT count(*) FROM inbound_messages",
        "stop": "SELECT count(DISTINCT contact_id) FROM consents WHERE channel = 'sms' AND state = 'revoked'",
    }[kind]
    with psycopg.connect(services.libpq(url)) as conn:
        row = conn.execute(query).fetchone()
    if row is None or row[0] != expected:
        raise RuntimeError(f"{kind}: {row[0] if row else 0} of {expected} callbacks took effect")


def _apply_stored(url: str) -> float:
    """Apply every stored status callback as the worker's task does, batch after batch, in
    this process; returns callbacks applied per second."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    applied = 0
    started = time.perf_counter()
    while True:
        done = status.apply_for(factory, utcnow, run_for=60.0)
        applied += done.applied
        if done.seen == 0:
            break
    seconds = time.perf_counter() - started
    engine.dispose()
    return applied / seconds


def _measure(kind: str, processes: int, count: int, workdir: Path) -> Ingest:
    url = services.create_pg_database("outreach_bench_webhooks")
    queue = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
    try:
        upgrade(url)
        contacts = count + WARM_UP
        _seed(url, contacts)
        port = free_port()
        settings = system_settings(
            url, port, celery_queue=queue, web_workers=processes, log_level="WARNING",
            log_format="text", twilio_api_base_url=f"http://127.0.0.1:{free_port()}",
            smtp_host="127.0.0.1", clinic_phone=CLINIC_NUMBER,
        )
        base = settings.public_base_url
        token = settings.twilio_auth_token.get_secret_value()
        ids = list(range(1, contacts + 1))
        warm = _requests(kind, range(count, count + WARM_UP), base, token, ids)
        measured = _requests(kind, range(count), base, token, ids)
        with stack(environment(settings), workdir) as running:
            running.start_web(port)
            if processes > 1:
                serve = running.processes["web"].pid
                wait_for(lambda: len(_spawned(serve)) >= processes, timeout=60,
                         what="every web process to start")
            _drive(base, warm, workdir)  # each process's first requests are its slowest
            figures = _drive(base, measured, workdir)
        applied = _apply_stored(url) if kind == "status" else None
        _check_applied(url, kind, count + WARM_UP)
        latencies = [float(x) for x in figures["latencies"]]  # type: ignore[attr-defined]
        seconds = float(figures["seconds"])  # type: ignore[arg-type]
        return Ingest(kind, processes, count, count / seconds,
                      1000 * percentile(latencies, 0.5), 1000 * percentile(latencies, 0.99), applied)
    finally:
        services.drop_pg_database(url)
        client = redis.Redis.from_url(services.REDIS_URL)
        client.delete(queue)
        client.close()


def run(
    status: int = 5000, inbound: int = 5000, processes: Sequence[int] = (1, 2), stops: int = 1000
) -> list[Ingest]:
    for problem in (services.ensure_postgres(), services.ensure_redis()):
        if problem:
            raise RuntimeError(problem)
    results: list[Ingest] = []
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
        for count in processes:
            results.append(_measure("status", count, status, Path(tmp)))
            results.append(_measure("inbound", count, inbound, Path(tmp)))
            if count == 1 and stops:
                results.append(_measure("stop", count, stops, Path(tmp)))
    return results


def report(results: Sequence[Ingest]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for r in results:
        meets = r.per_second >= 1000 and r.p99_ms <= 50
        verdict = "meets" if meets else "MISSES"
        goal = "" if r.processes > 1 or r.kind == "stop" else f" ({verdict} >= 1,000 req/s, p99 <= 50 ms)"
        what = {"status": "status callbacks", "inbound": "inbound SMS", "stop": "inbound STOPs"}[r.kind]
        pairs.append((
            f"{what}, {r.processes} process{'es' if r.processes > 1 else ''}",
            f"{r.per_second:,.0f} req/s, p50 {r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms "
            f"({r.requests:,} signed requests, {CONNECTIONS} connections){goal}",
        ))
        if r.applied_per_second is not None:
            pairs.append((
                f"  applied by one worker ({r.processes} web)",
                f"{r.applied_per_second:,.0f} callbacks/s (batches of {status.BATCH_SIZE})",
            ))
    return pairs


def pairs(
    status: int = 5000, inbound: int = 5000, processes: Sequence[int] = (1, 2), stops: int = 1000
) -> list[tuple[str, str]]:
    return report(run(status, inbound, processes, stops))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--status", type=int, default=5000)
    parser.add_argument("--inbound", type=int, default=5000)
    parser.add_argument("--stops", type=int, default=1000)
    parser.add_argument("--processes", default="1,2")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}")
    results = run(args.status, args.inbound, [int(p) for p in args.processes.split(",")], args.stops)
    for what, figure in report(results):
        print(f"  {what:<28} {figure}")


if __name__ == "__main__":
    main()
