"""Contacts CSV import: a generated 100k-row file into fresh SQLite and PostgreSQL databases,
against the naive way (one ORM object and one commit per row) measured on a subset.

The naive baseline does what a straightforward importer would: validate the row, look the
external_id up, add the Contact, record its consent through the ledger service, commit.
It runs on ``baseline_rows`` rows and is extrapolated to the full file (said so in the output).
"""

from __future__ import annotations

import csv
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy import select
from sqlalchemy.orm import Session

from bench import cpu, floor
from outreach.contacts import consent
from outreach.contacts.csvformat import ContactRow, Header, validate_row
from outreach.contacts.importer import ImportReport, import_contacts_csv
from outreach.contacts.reader import open_contacts_csv
from outreach.db import make_engine, make_session_factory
from outreach.migrate import upgrade
from outreach.models import ConsentSource, Contact, ContactTag, utcnow
from tests.support.services import PG_ADMIN_URL, libpq

CLINIC_TZ = "America/Los_Angeles"

FIRST = ["Ana", "Ben", "Chloé", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "José", "Kim", "Liam",
         "María", "Noor", "Olu", "Priya", "Quinn", "Rosa", "Sam", "Tomás", "Uma", "Vic", "Wen", "Yara"]
LAST = ["Nguyen", "García", "Smith", "O'Brien", "Kowalski", "Patel", "Lee", "Johnson", "Haddad",
        "Martínez", "Brown", "Okafor", "Chen", "Rossi", "Müller", "Davis"]
AREA_CODES = [925, 510, 415, 408, 650, 707, 916, 213, 310, 212, 312, 305, 602, 503, 206, 720, 208, 915]
ZONES = ["", "", "", "", "", "", "", "America/New_York", "America/Chicago", "america/denver"]
SMS_CELLS = ["yes"] * 14 + ["no"] * 2 + [""] * 3 + ["care;education;marketing"]
EMAIL_CELLS = ["yes"] * 10 + [""] * 8 + ["no", "care"]
TAGS = ["", "", "new-patient", "infusion-series", "maintenance", "new-patient;spanish", "vip"]


def write_sample_csv(path: Path, rows: int, seed: int = 7) -> None:
    """A realistic clinic export: MRNs, US phones in assorted formats, families sharing a phone,
    some emails, consent cells of every kind, a few zones given."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["External ID", "First Name", "Last Name", "Phone", "Email", "Timezone",
                         "Language", "Tags", "SMS Consent", "Email Consent"])
        family_phone = ""
        for n in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            if family_phone and rng.random() < 0.1:
                phone = family_phone  # a family member on the same phone
            else:
                area, exchange, line = rng.choice(AREA_CODES), rng.randint(200, 999), rng.randint(0, 9999)
                phone = rng.choice([f"({area}) {exchange}-{line:04d}", f"{area}-{exchange}-{line:04d}",
                                    f"+1{area}{exchange}{line:04d}", f"1 {area} {exchange} {line:04d}"])
                family_phone = phone
            email = f"{first}.{last}.{n}@example{n % 40}.org".lower().replace("'", "") \
                if rng.random() < 0.6 else ""
            writer.writerow([
                f"MRN{n:07d}", first, last, phone, email, rng.choice(ZONES),
                "es" if rng.random() < 0.15 else "en", rng.choice(TAGS),
                rng.choice(SMS_CELLS), rng.choice(EMAIL_CELLS),
            ])


@dataclass
class Timed:
    seconds: float
    report: ImportReport
    # CPU seconds in the window: the database server's processes, its busiest one (the import's
    # backend: one transaction is one process, so its share is a floor), and the import's own
    # (this process and its validation workers).
    server: float
    backend: float
    client: float


def _import(url: str, path: Path) -> Timed:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    server_before, client_before = cpu.snapshot(), cpu.own_seconds()
    start = time.perf_counter()
    with factory() as session:
        report = import_contacts_csv(session, path, clinic_timezone=CLINIC_TZ, now=utcnow())
        session.commit()
    seconds = time.perf_counter() - start
    server_after = cpu.snapshot()
    server = cpu.spent(server_before, server_after).get("postgres", 0.0)
    backend = cpu.busiest(server_before, server_after, "postgres")
    client = cpu.own_seconds() - client_before
    engine.dispose()
    return Timed(seconds, report, server, backend, client)


def _naive(url: str, path: Path, limit: int) -> float:
    """One ORM object and one commit per row; returns seconds for ``limit`` rows."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with open_contacts_csv(path) as source:
        header: Header = source.header
        start = time.perf_counter()
        for count, (line, cells) in enumerate(source.rows, start=1):
            row = validate_row(line, cells, header)
            with factory() as session, session.begin():
                if isinstance(row, ContactRow):
                    _naive_row(session, row, path.name)
            if count >= limit:
                break
        seconds = time.perf_counter() - start
    engine.dispose()
    return seconds


def _naive_row(session: Session, row: ContactRow, file_name: str) -> None:
    if row.external_id and session.scalar(select(Contact.id).where(Contact.external_id == row.external_id)):
        return
    contact = Contact(
        external_id=row.external_id, first_name=row.first_name or "", last_name=row.last_name or "",
        phone=row.phone, email=row.email,
        timezone=row.timezone or row.derived_timezone or CLINIC_TZ, language=row.language or "en",
        tags=[ContactTag(tag=t) for t in row.tags or ()],
    )
    session.add(contact)
    session.flush()
    for channel in ("sms", "email"):
        cell = row.consent(channel)
        if cell is None:
            continue
        line = f"{file_name} line {row.line}"
        evidence = consent.Evidence(ConsentSource.CSV_IMPORT, line, occurred_at=utcnow())
        if cell.state == "granted":
            consent.grant(session, contact.id, channel, cell.categories, evidence)
        else:
            consent.revoke(session, contact.id, channel, cell.categories, evidence)


def _scratch_pg(admin_url: str) -> str | None:
    name = f"outreach_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(libpq(admin_url), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return None
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _drop_pg(admin_url: str, url: str) -> None:
    with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _fresh(kind: str, workdir: Path, admin_url: str, cleanup: list[Callable[[], None]]) -> str | None:
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'{uuid.uuid4().hex[:8]}.sqlite'}"
    else:
        scratch = _scratch_pg(admin_url)
        if scratch is None:
            return None
        url = scratch
        cleanup.append(lambda: _drop_pg(admin_url, url))
    upgrade(url)
    return url


def _describe(timed: Timed) -> str:
    r = timed.report
    return (f"{timed.seconds:.2f} s, {r.rows / timed.seconds:,.0f} rows/s (added {r.added}, "
            f"updated {r.updated}, unchanged {r.unchanged}, rejected {r.rejected}, "
            f"consent events {r.consent_events})")


def _cpu(timed: Timed) -> str:
    return (f"PostgreSQL {timed.server:.2f} s (its busiest process, the import's backend, "
            f"{timed.backend:.2f} s), the import {timed.client:.2f} s (parent and validation workers); "
            f"CPU seconds in the {timed.seconds:.2f} s")


def _floor(url: str) -> str:
    """The server's part of this first load, measured again on its rows (bench/floor.py)."""
    part = floor.import_floor(url)
    search = part.indexes.get(floor.SEARCH_INDEX)
    others = [v for k, v in part.indexes.items() if k != floor.SEARCH_INDEX]
    plain = None if None in others else sum(v for v in others if v is not None)
    return (f"the rows alone {floor.seconds(part.rows)}, then {len(others)} plain indexes "
            f"{floor.seconds(plain)} and the search index {floor.seconds(search)}: the backend's CPU "
            f"to COPY them into bare tables and build each index after, as a first load does")


def _seed_one_contact(url: str) -> None:
    """A database that is not empty: the import then takes its ordinary path (lookups, and
    foreign keys checked row by row) instead of the initial-load one."""
    engine = make_engine(url)
    with make_session_factory(engine)() as session, session.begin():
        session.add(Contact(first_name="Existing", last_name="Patient", phone="+14155550100",
                            timezone=CLINIC_TZ))
    engine.dispose()


def run(rows: int = 100_000, baseline_rows: int = 3_000, pg_admin_url: str = PG_ADMIN_URL
        ) -> list[tuple[str, str]]:
    """Figures as (what, value) lines."""
    figures: list[tuple[str, str]] = []
    cleanup: list[Callable[[], None]] = []
    with tempfile.TemporaryDirectory(prefix="outreach-bench-") as tmp:
        workdir = Path(tmp)
        path = workdir / "contacts.csv"
        write_sample_csv(path, rows)
        figures.append(("file", f"{rows} rows, {path.stat().st_size / 1e6:.1f} MB"))
        try:
            for kind in ("sqlite", "postgresql"):
                url = _fresh(kind, workdir, pg_admin_url, cleanup)
                if url is None:
                    figures.append((f"{kind}", "skipped: PostgreSQL unreachable"))
                    continue
                first = _import(url, path)
                figures.append((f"{kind} empty db", _describe(first)))
                if kind == "postgresql":
                    figures.append((f"{kind} empty db, CPU", _cpu(first)))
                    figures.append((f"{kind} empty db, floor", _floor(url)))
                figures.append((f"{kind} re-import", _describe(_import(url, path))))
                busy_url = _fresh(kind, workdir, pg_admin_url, cleanup)
                assert busy_url is not None
                _seed_one_contact(busy_url)
                figures.append((f"{kind} non-empty db", _describe(_import(busy_url, path))))
                naive_url = _fresh(kind, workdir, pg_admin_url, cleanup)
                assert naive_url is not None
                naive_speed = baseline_rows / _naive(naive_url, path, baseline_rows)
                figures.append((
                    f"{kind} naive",
                    f"{naive_speed:,.0f} rows/s on the first {baseline_rows} rows, one ORM object and "
                    f"one commit each (extrapolated: {rows / naive_speed:.0f} s for {rows})",
                ))
                speed = first.report.rows / first.seconds
                figures.append((f"{kind} speed-up", f"{speed / naive_speed:.0f}x (empty db vs naive)"))
        finally:
            for step in cleanup:
                step()
    return figures
