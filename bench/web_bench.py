"""The staff web app at clinic scale on PostgreSQL: 100k contacts, 1M messages, 50k replies.

Goals: dashboard, inbox, contact search and a contact page each answer in <= 150 ms
at p95; the first page of any list in <= 100 ms. Measured in process, through the whole ASGI
app (session check, audit row, database, template), as the time from request to full response
body, with a signed-in staff login; the data set is written straight in SQL (not measured).
The JSON API's lists of messages and replies are measured on the same data, with a bearer
token, against the lists' goal: an integration pages through them however big the outbox.

    python -m bench.web_bench [--contacts N] [--rounds N] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from outreach.accounts import users
from outreach.config import load_settings
from outreach.db import make_engine, make_session_factory, transaction
from outreach.delivery import rollup
from outreach.migrate import upgrade
from outreach.web.api import tokens
from outreach.web.api.core import TokenBucket
from outreach.web.api.schemas import encode_cursor
from outreach.web.app import create_app
from tests.support.services import PG_ADMIN_URL, libpq

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)
PASSWORD = "bench password 1"
MESSAGES_PER_CONTACT = 10
STATES = "ARRAY['delivered','delivered','delivered','sent','failed','scheduled','scheduled','cancelled']"


def _seed(url: str, contacts: int, messages_per_contact: int, replies: int) -> None:
    with psycopg.connect(libpq(url)) as conn:
        conn.execute(
            f"""INSERT INTO contacts (external_id, first_name, last_name, phone, email, timezone, language,
                                      created_at, updated_at)
                SELECT 'MRN-' || n, 'Pat' || n, 'Doe', '+1415' || lpad(n::text, 7, '0'),
                       'p' || n || '@example.org', 'America/Los_Angeles', 'en', now(), now()
                FROM generate_series(1, {contacts}) AS n"""
        )
        # Spread evenly over the 30 days around NOW (each contact's ten, three days apart,
        # shifted by up to three days): five in eight of those already due were sent, when
        # they fell due; none is sent ahead of NOW.
        conn.execute(
            f"""INSERT INTO messages (idempotency_key, contact_id, channel, category, kind, context, due_at,
                                      state, attempts, max_attempts, sent_at, created_at, updated_at)
                SELECT 'bench:' || c || ':' || k, c, CASE WHEN k %% 3 = 0 THEN 'email' ELSE 'sms' END,
                       'care', 'automated', '{{}}', due, ({STATES})[1 + (c + k) %% 8], 1, 5,
                       CASE WHEN (c + k) %% 8 < 5 AND due < %(now)s::timestamptz THEN due END,
                       now(), now()
                FROM generate_series(1, {contacts}) AS c, generate_series(1, {messages_per_contact}) AS k,
                     LATERAL (SELECT %(now)s::timestamptz
                                     + ((k - 1 - {messages_per_contact} / 2) * interval '3 days')
                                     + (c %% 4320) * interval '1 minute' AS due) AS d""",
            {"now": NOW},
        )
        conn.execute(
            f"""INSERT INTO inbound_messages (provider_sid, from_address, to_address, body, received_at,
                                              classification, processed_at)
                SELECT 'SM' || lpad(n::text, 32, '0'), '+1415' || lpad((1 + n %% {contacts})::text, 7, '0'),
                       '+15005550006', 'Thanks, see you then', %(now)s::timestamptz - n * interval '1 minute',
                       'other', %(now)s::timestamptz
                FROM generate_series(1, {replies}) AS n""",
            {"now": NOW},
        )
        conn.execute(
            """INSERT INTO inbox_items (contact_id, inbound_message_id, kind, text, urgent, state, candidates,
                                        created_at)
               SELECT 1 + (i.id %% %(contacts)s), i.id, 'message', i.body, i.id %% 500 = 0,
                      CASE WHEN i.id %% 10 = 0 THEN 'unread' ELSE 'handled' END, '[]', i.received_at
               FROM inbound_messages i""",
            {"contacts": contacts},
        )
        conn.execute("ANALYZE")


def _p95(
    client: TestClient,
    path: str,
    rounds: int,
    form: dict[str, str] | None,
    headers: dict[str, str] | None = None,
) -> tuple[float, float]:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.post(path, data=form) if form else client.get(path, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    timings.sort()
    return statistics.median(timings), timings[max(0, round(0.95 * len(timings)) - 1)]


def pages(contacts: int) -> list[tuple[str, str, int, dict[str, str] | None]]:
    """(what, path, goal in ms, the form to post or None for a GET)."""
    middle = contacts // 2 + 11
    return [
        ("dashboard", "/", 150, None),
        ("inbox", "/inbox", 150, None),
        # Searches are posted (patient data stays out of URLs).
        ("contact search", "/contacts", 150, {"q": f"Pat{middle}"}),
        ("contact page", f"/contacts/{middle}", 150, None),
        ("contacts, first page", "/contacts", 100, None),
        ("messages, first page", "/messages", 100, None),
        ("appointments, today", "/appointments", 100, None),
    ]


def _figure(median: float, p95: float, goal: int) -> str:
    verdict = "ok" if p95 <= goal else "OVER"
    return f"median {median:.0f} ms, p95 {p95:.0f} ms (goal {goal}) {verdict}"


def api_pages(contacts: int) -> list[tuple[str, str, int]]:
    """(what, path, goal in ms) of the API's lists, read with a bearer token."""
    deep = encode_cursor(contacts * MESSAGES_PER_CONTACT * 9 // 10)
    return [
        ("API messages, first page", "/api/v1/messages?limit=100", 100),
        ("API messages, a page 90% in", f"/api/v1/messages?limit=100&cursor={deep}", 100),
        ("API messages, failed", "/api/v1/messages?state=failed&limit=100", 100),
        ("API messages, one day's email", "/api/v1/messages?channel=email&due_from=2026-06-01T00:00:00Z"
         "&due_before=2026-06-02T00:00:00Z", 100),
        ("API inbox, open", "/api/v1/inbox", 100),
    ]


def run(
    contacts: int = 100_000, rounds: int = 20, pg_admin_url: str = PG_ADMIN_URL
) -> list[tuple[str, str]]:
    name = f"outreach_bench_web_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(pg_admin_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    figures: list[tuple[str, str]] = []
    try:
        upgrade(url)
        started = time.perf_counter()
        _seed(url, contacts, messages_per_contact=MESSAGES_PER_CONTACT, replies=contacts // 2)
        figures.append(("setup (not a goal)", f"{time.perf_counter() - started:.0f} s"))
        settings = load_settings(database_url=url, templates_dir=TEMPLATES)
        factory = make_session_factory(engine)
        # What beat's delivery-days sweep keeps: each day counted once (the first run counts
        # the whole window), today and the last two days again every 10 minutes.
        for what in ("delivery-days sweep, first run", "delivery-days sweep, later runs"):
            started = time.perf_counter()
            with transaction(factory) as session:
                rollup.count_days(session, NOW, settings.clinic_zone)
            figures.append((f"{what} (not a goal)", f"{(time.perf_counter() - started) * 1000:.0f} ms"))
        with transaction(factory) as session:
            users.add_user(session, "bench@clinic.example.org", "staff", PASSWORD, NOW)
            bearer = {"Authorization": f"Bearer {tokens.issue(session, 'bench', 'staff', NOW).secret}"}
        app = create_app(settings, factory, enqueue_inbound=lambda _id: None, clock=lambda: NOW)
        app.state.api_bucket = TokenBucket(1e9, 10**9)  # the rate limit is not what is measured
        with TestClient(app) as client:
            login = client.get("/login").text
            token = login.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            client.post(
                "/login",
                data={"email": "bench@clinic.example.org", "password": PASSWORD, "csrf_token": token},
            )
            csrf = client.get("/").text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            for what, path, goal, form in pages(contacts):
                posted = {**form, "csrf_token": csrf} if form else None
                _p95(client, path, 2, posted)  # warm the caches and the query plans
                median, p95 = _p95(client, path, rounds, posted)
                figures.append((what, _figure(median, p95, goal)))
            for what, path, goal in api_pages(contacts):
                _p95(client, path, 2, None, bearer)
                figures.append((what, _figure(*_p95(client, path, rounds, None, bearer), goal)))
    finally:
        engine.dispose()
        with psycopg.connect(libpq(pg_admin_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    for what, figure in run(args.contacts, args.rounds, args.pg_admin_url):
        print(f"{what:<24} {figure}")


if __name__ == "__main__":
    main()
