"""The benchmarks' floor (bench/floor.py): it writes a bulk write's rows again, three ways or
index by index, and must leave the scratch database as the timed run left it."""

from __future__ import annotations

from pathlib import Path

import psycopg
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench import floor
from outreach.campaigns import sync
from outreach.campaigns.enroll import enroll
from outreach.db import make_engine, make_session_factory
from outreach.models import Contact, Enrollment, Message
from tests.support.campaigns import SMALL_CAMPAIGN, add_contact, copy_templates, utc
from tests.support.services import libpq

NOW = utc("2026-03-02 17:00")


def _counts(session: Session) -> tuple[int, int, int]:
    return (
        session.scalar(select(func.count()).select_from(Contact)) or 0,
        session.scalar(select(func.count()).select_from(Enrollment)) or 0,
        session.scalar(select(func.count()).select_from(Message)) or 0,
    )


def _floor_tables(url: str) -> list[str]:
    with psycopg.connect(libpq(url)) as conn:
        return [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'floor%'")]


def test_the_floor_measures_every_part_and_leaves_the_rows_as_they_were(pg_url: str, tmp_path: Path) -> None:
    settings = copy_templates(tmp_path, pg_url, campaigns={"demo": SMALL_CAMPAIGN})
    engine = make_engine(pg_url)
    try:
        with make_session_factory(engine)() as session:
            ids = [
                add_contact(session, first_name=f"P{n}", phone=f"+1415555{n:04d}", email=f"p{n}@example.org")
                for n in range(40)
            ]
            sync.sync(session, settings, NOW)
            enroll(session, settings, "demo", ids, now=NOW)
            session.commit()
            before = _counts(session)
        assert before == (40, 40, 120)

        written = floor.enroll_floor(pg_url)
        part = floor.import_floor(pg_url)

        with psycopg.connect(libpq(pg_url)) as conn:
            names = {r[0] for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = ANY(%s)", (list(floor.IMPORT_TABLES),)
            )}
            # Read from /proc: with the server on this machine (OUTREACH_TEST_DATABASE_URL may name
            # another), every part has a figure; elsewhere none has.
            local = floor.backend_seconds(conn) is not None
        assert set(part.indexes) == names and floor.SEARCH_INDEX in names
        figures = [written.rows, written.indexed, written.tables, part.rows, *part.indexes.values()]
        assert [f is not None for f in figures] == [local] * len(figures)

        with make_session_factory(engine)() as session:
            assert _counts(session) == before
        assert _floor_tables(pg_url) == []
    finally:
        engine.dispose()
