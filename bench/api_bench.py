"""The JSON API on one web process (uvicorn, one worker) against PostgreSQL.

Goals: `PUT /api/v1/appointments/{external_id}` sustains >= 300 upserts/s with p99 <= 100 ms
(each one books a new visit and materialises its reminders); a contacts list page
(`GET /api/v1/contacts?limit=100&cursor=...` at random depths) <= 50 ms p95 with 100k contacts,
measured with the same requests in flight as the upserts and, for what a page costs, one at a time.
The same upsert bodies also go through the bench server's shell route (`bench/api_server.py`):
what an authenticated, audited API write costs the web process before any booking.

The server runs in its own process (so the client's threads do not share its interpreter) with
the rate limit lifted; the client keeps a few requests in flight. Setup (contacts with SMS and
email care consent, straight in SQL) is not measured.

    python -m bench.api_bench [--contacts N] [--upserts N] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from bench import cpu
from bench.api_server import SHELL_PREFIX
from bench.seed import grant_consent
from bench.stats import percentile
from outreach.config import load_settings
from outreach.db import make_engine, make_session_factory
from outreach.migrate import upgrade
from outreach.web.api import tokens
from outreach.web.api.schemas import encode_cursor
from tests.support.services import PG_ADMIN_URL, libpq

REPO = Path(__file__).resolve().parent.parent
IN_FLIGHT = 4


def _seed(url: str, contacts: int) -> None:
    with psycopg.connect(libpq(url)) as conn:
        conn.execute(
            f"""INSERT INTO contacts (external_id, first_name, last_name, phone, email, timezone, language,
                                      created_at, updated_at)
                SELECT 'MRN-' || n, 'Pat', 'Doe', '+1415' || lpad(n::text, 7, '0'),
                       'p' || n || '@example.org', 'America/Los_Angeles', 'en', now(), now()
                FROM generate_series(1, {contacts}) AS n"""
        )
        grant_consent(conn, ["sms", "email"], ["care"])
        conn.execute("ANALYZE")


def _run_clients(
    work: list[tuple[str, str, dict[str, object] | None]], base: str, auth: str, in_flight: int = IN_FLIGHT
) -> tuple[float, list[float]]:
    """Send every request with ``in_flight`` threads; returns (seconds, latencies)."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    items = iter(work)

    def worker() -> None:
        with httpx.Client(base_url=base, headers={"Authorization": auth}, timeout=30) as client:
            while True:
                with lock:
                    item = next(items, None)
                if item is None:
                    return
                method, path, body = item
                started = time.perf_counter()
                response = client.request(method, path, json=body)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code >= 300:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(in_flight)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return seconds, latencies


def _wait_until_up(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the web process exited")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the web process did not answer within 120 s")


def run(
    contacts: int = 100_000, upserts: int = 2000, pg_admin_url: str = PG_ADMIN_URL
) -> dict[str, float]:
    name = f"outreach_bench_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(pg_admin_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    server: subprocess.Popen[bytes] | None = None
    try:
        upgrade(url)
        _seed(url, contacts)
        with make_session_factory(engine)() as session, session.begin():
            secret = tokens.issue(session, "bench", "admin", datetime.now(UTC)).secret
        settings = load_settings(database_url=url, templates_dir=REPO / "templates")
        port = 18000 + os.getpid() % 1000
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.api_server", url, str(settings.templates_dir), str(port)], cwd=REPO
        )
        _wait_until_up(base, server)
        # Visits a week ahead, spread over clinic hours, for contacts across the table.
        first = (datetime.now(UTC) + timedelta(days=7)).replace(hour=17, minute=0, second=0, microsecond=0)
        puts: list[tuple[str, str, dict[str, object] | None]] = [
            (
                "PUT",
                f"/api/v1/appointments/BENCH-{n}",
                {
                    "contact_external_id": f"MRN-{1 + (n * 7919) % contacts}",
                    "starts_at": (first + timedelta(days=n % 20, minutes=15 * (n % 24))).isoformat(),
                    "type": "consultation",
                },
            )
            for n in range(upserts)
        ]
        load = os.getloadavg()[0]
        cpu_before, client_before = cpu.snapshot(), time.process_time()
        seconds, put_latencies = _run_clients(puts, base, f"Bearer {secret}")
        put_cpu = cpu.spent(cpu_before, cpu.snapshot())
        put_cpu["client"] = time.process_time() - client_before
        # The same bodies through the bench's shell route: what any API write costs before the booking.
        shells = [
            (method, path.replace("/api/v1/appointments", SHELL_PREFIX), body) for method, path, body in puts
        ]
        cpu_before = cpu.snapshot()
        shell_seconds, _ = _run_clients(shells, base, f"Bearer {secret}")
        shell_cpu = cpu.spent(cpu_before, cpu.snapshot())
        pages: list[tuple[str, str, dict[str, object] | None]] = [
            ("GET", f"/api/v1/contacts?limit=100&cursor={encode_cursor((n * 48271) % contacts)}", None)
            for n in range(400)
        ]
        _, page_latencies = _run_clients(pages, base, f"Bearer {secret}")
        # The same pages one at a time: what a page costs, without three others queued beside it.
        _, alone_latencies = _run_clients(pages[::2], base, f"Bearer {secret}", in_flight=1)
        return {
            "load": load,
            "upserts_per_s": upserts / seconds,
            "put_p50_ms": 1000 * statistics.median(put_latencies),
            "put_p99_ms": 1000 * percentile(put_latencies, 0.99),
            "page_p50_ms": 1000 * statistics.median(page_latencies),
            "page_p95_ms": 1000 * percentile(page_latencies, 0.95),
            "page_alone_p50_ms": 1000 * statistics.median(alone_latencies),
            "page_alone_p95_ms": 1000 * percentile(alone_latencies, 0.95),
            **{f"put_cpu_{part}_ms": 1000 * used / upserts for part, used in put_cpu.items()},
            "shell_per_s": upserts / shell_seconds,
            "shell_cpu_web_ms": 1000 * shell_cpu.get("web", 0.0) / upserts,
            "shell_cpu_postgres_ms": 1000 * shell_cpu.get("postgres", 0.0) / upserts,
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        engine.dispose()
        with psycopg.connect(libpq(pg_admin_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pairs(contacts: int = 100_000, upserts: int = 2000) -> list[tuple[str, str]]:
    figures = run(contacts, upserts)
    return [
        ("load before", f"{figures['load']:.1f} (1-minute average, 2 cores)"),
        ("PUT upserts/s", f"{figures['upserts_per_s']:.0f} (goal >= 300, {IN_FLIGHT} in flight)"),
        ("PUT p50 / p99", f"{figures['put_p50_ms']:.0f} / {figures['put_p99_ms']:.0f} ms (goal p99 <= 100)"),
        (
            "PUT CPU per upsert",
            ", ".join(
                f"{part} {figures[f'put_cpu_{part}_ms']:.2f} ms"
                for part in ("web", "postgres", "client")
                if f"put_cpu_{part}_ms" in figures
            )
            + " (300/s leaves the web process, one core, 3.3 ms for each)",
        ),
        (
            "PUT without the booking",
            f"{figures['shell_per_s']:.0f}/s, web {figures['shell_cpu_web_ms']:.2f} ms, "
            f"postgres {figures['shell_cpu_postgres_ms']:.2f} ms of CPU each (the same bodies: body "
            "checks, token, transaction, audit event, commit, answer; no booking)",
        ),
        (
            "contacts page p50/p95",
            f"{figures['page_p50_ms']:.0f} / {figures['page_p95_ms']:.0f} ms "
            f"(goal p95 <= 50, {IN_FLIGHT} in flight)",
        ),
        (
            "contacts page alone",
            f"{figures['page_alone_p50_ms']:.0f} / {figures['page_alone_p95_ms']:.0f} ms "
            "(p50 / p95, one request at a time)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--upserts", type=int, default=2000)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    figures = run(args.contacts, args.upserts, args.pg_admin_url)
    for key, value in figures.items():
        print(f"{key:<16} {value:.1f}")


if __name__ == "__main__":
    main()
