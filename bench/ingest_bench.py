"""Webhook ingest: signed status callbacks and signed inbound SMS into one web process.

Real processes as in production: PostgreSQL (a scratch database, migrated, dropped at the
end), the local Redis as broker (a queue name of this run's own, emptied at the end), and one
``outreach serve`` process (OUTREACH_WEB_WORKERS=1). No Celery worker runs: what is measured
is the web tier's answer, and what it leaves behind (stored callbacks, enqueued inbound ids).

1. status callbacks for messages that exist and were just sent (``sent``, with their Twilio
   SID and our correlation id), each signed as Twilio signs it;
2. inbound SMS from known patients (plain text, no keyword), each with its own MessageSid;
3. the applier (``outreach.delivery.ingest.apply_pending``) on the stored callbacks, in this
   process: callbacks applied per second, for sizing the workers.

The requests are built and signed first, then posted by ``bench.loadgen`` in a process of its
own: 32 keep-alive connections on loopback, bounded in count and in time.

    .venv/bin/python -m bench.ingest_bench [--requests 20000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
from twilio.request_validator import RequestValidator

from outreach.config import Settings
from outreach.db import make_engine, make_session_factory
from outreach.delivery import ingest
from outreach.migrate import upgrade
from outreach.models import MessageState, utcnow
from outreach.outbox import insert_messages
from tests.support import services
from tests.support.e2e import environment, system_settings
from tests.support.processes import free_port, stack
from tests.support.sandbox import TEST_ACCOUNT_SID

Pairs = list[tuple[str, str]]
Request = tuple[str, dict[str, str], str]

CONCURRENCY = 32
GOAL_RPS = 1000.0
GOAL_P99 = 0.050
STATUS_PATH = "/webhooks/twilio/status"
SMS_PATH = "/webhooks/twilio/sms"
CONTACTS = 1000


def _seed(settings: Settings, count: int) -> list[str]:
    """Contacts (their phones are returned) and ``count`` SMS just sent to them."""
    url = settings.database_url
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(
            """INSERT INTO contacts (first_name, last_name, phone, timezone, language, created_at, updated_at)
               SELECT 'Pat', 'Bench', '+1415' || lpad(n::text, 7, '0'), 'America/Los_Angeles', 'en',
                      now(), now()
               FROM generate_series(1, %s) AS n""",
            (CONTACTS,),
        )
        rows = conn.execute("SELECT id, phone FROM contacts ORDER BY id").fetchall()
    engine = make_engine(url)
    now = utcnow()
    with make_session_factory(engine).begin() as session:
        insert_messages(
            session,
            [
                {
                    "idempotency_key": f"ingest:{n}",
                    "contact_id": rows[n % len(rows)][0],
                    "channel": "sms",
                    "category": "care",
                    "kind": "system",
                    "body_override": "A message from your clinic.",
                    "due_at": now - timedelta(seconds=1),
                    "state": MessageState.SENT,
                    "sent_at": now,
                    "provider_id": _sid(n),
                    "correlation_id": f"{n:032x}",
                }
                for n in range(count)
            ],
        )
    engine.dispose()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("ANALYZE")
    return [str(phone) for _, phone in rows]


def _sid(n: int, prefix: str = "SM") -> str:
    return f"{prefix}{n:032x}"


def _status_requests(settings: Settings, count: int) -> list[Request]:
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    out: list[Request] = []
    for n in range(count):
        path = f"{STATUS_PATH}?c={n:032x}"
        form = {"MessageSid": _sid(n), "MessageStatus": "delivered", "AccountSid": TEST_ACCOUNT_SID}
        out.append((path, form, validator.compute_signature(settings.public_base_url + path, form)))
    return out


def _sms_requests(settings: Settings, phones: list[str], count: int) -> list[Request]:
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    out: list[Request] = []
    for n in range(count):
        form = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": TEST_ACCOUNT_SID,
            "From": phones[n % len(phones)],
            "To": settings.twilio_from,
            "Body": "Running a few minutes late, see you soon",
        }
        out.append((SMS_PATH, form, validator.compute_signature(settings.public_base_url + SMS_PATH, form)))
    return out


def _load(base: str, requests: list[Request], seconds: float) -> dict[str, Any]:
    job = {"base": base, "concurrency": CONCURRENCY, "seconds": seconds, "requests": requests}
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=json.dumps(job).encode(),
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    result: dict[str, Any] = json.loads(done.stdout)
    result["load"] = os.getloadavg()[0]
    return result


def run(requests: int = 20_000, seconds: float = 30.0, log: Callable[[str], None] = lambda _: None) -> Pairs:
    for problem in (services.ensure_postgres(), services.ensure_redis()):
        if problem:
            raise RuntimeError(problem)
    load_before = os.getloadavg()[0]
    url = services.create_pg_database("outreach_bench_ingest")
    log_dir = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    port = free_port()
    settings = system_settings(url, port).model_copy(
        update={
            "web_workers": 1,
            "log_level": "WARNING",
            "log_format": "json",
            # Nothing is sent in this run; loopback providers keep the start-up secret rules quiet.
            "twilio_api_base_url": "http://127.0.0.1:9",
            "smtp_host": "127.0.0.1",
        }
    )
    out: Pairs = []
    try:
        upgrade(url)
        phones = _seed(settings, requests)
        status_requests = _status_requests(settings, requests)
        sms_requests = _sms_requests(settings, phones, requests)
        base = f"http://127.0.0.1:{port}"
        with stack(environment(settings), log_dir) as processes:
            processes.start_web(port)
            _load(base, status_requests[:200] + sms_requests[-200:], 30)  # connections, caches, JIT of plans
            status = _load(base, status_requests[200:], seconds)
            log(f"status callbacks: {status}")
            sms = _load(base, sms_requests[:-200], seconds)
            log(f"inbound SMS: {sms}")
        out.append(("status callback ingest", _figure(status)))
        out.append(("inbound SMS ingest", _figure(sms)))
        out.append(("status callbacks applied", _apply(settings)))
    finally:
        broker = redis.Redis.from_url(settings.broker_url)
        try:
            queue = settings.celery_queue
            broker.delete(queue, f"{queue}.control", f"{queue}.status")
        finally:
            broker.close()
        services.drop_pg_database(url)
        shutil.rmtree(log_dir, ignore_errors=True)
    after = os.getloadavg()[0]
    out.append(("machine load", f"{load_before:.2f} before, {after:.2f} after (1-min load average)"))
    return out


def _figure(result: dict[str, Any]) -> str:
    ok = result["rps"] >= GOAL_RPS and result["p99"] <= GOAL_P99
    refused = result["sent"] - result["ok"]
    return (
        f"{result['rps']:,.0f} req/s, p50 {result['p50'] * 1000:.0f} ms, p99 {result['p99'] * 1000:.0f} ms "
        f"({result['sent']:,} requests in {result['seconds']:.1f} s, {CONCURRENCY} connections, one web "
        f"process; {refused} not 200; load {result['load']:.1f}; "
        f"{'meets' if ok else 'MISSES'} >= 1,000 req/s, p99 <= 50 ms)"
    )


def _apply(settings: Settings) -> str:
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        waiting = ingest.waiting(session)
    started = time.perf_counter()
    applied = ingest.apply_pending(factory, utcnow, run_for=600)
    span = time.perf_counter() - started
    engine.dispose()
    return (
        f"{applied / span:,.0f} callbacks/s ({applied:,} of {waiting:,} stored, in {span:.1f} s, "
        f"one process, batches of {ingest.BATCH}; load {os.getloadavg()[0]:.1f})"
    )


def pairs(quick: bool = False) -> Pairs:
    """The figures for `make bench` (bench/__main__.py)."""
    return run(2_000, 10.0) if quick else run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000, help="requests of each kind")
    parser.add_argument("--seconds", type=float, default=30.0, help="the most each kind may take")
    args = parser.parse_args()
    for what, figure in run(args.requests, args.seconds, log=print):
        print(f"{what:<28} {figure}")


if __name__ == "__main__":
    main()
