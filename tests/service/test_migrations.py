"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from outreach.contacts.fields import normalize_email
from outreach.db import make_engine
from outreach.migrate import alembic_config, upgrade
from outreach.models import Base, Contact
from outreach.models.contacts import CONTACT_SEARCH_TEXT

# Alembic cannot compare an index on an expression with what PostgreSQL reflects (it normalises
# the expression) nor reflect one on SQLite: checked below by what it is for instead.
EXPRESSION_INDEXES = {"ix_contacts_search"}
STAMP = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def _comparable(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


# The same index, which SQLite never has (it is PostgreSQL's only): Alembic says it skips it.
SKIPPED_ON_SQLITE = (
    "ignore:autogenerate skipping metadata-specified expression-based index 'ix_contacts_search'"
)


@pytest.mark.filterwarnings(SKIPPED_ON_SQLITE)
def test_migrations_match_models(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _comparable})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_upgrade_is_idempotent(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is not None
    engine.dispose()


def test_contact_search_uses_its_trigram_index_on_postgresql(pg_url: str) -> None:
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))  # an empty table: make the plan show the index
        query = select(Contact.id).where(CONTACT_SEARCH_TEXT.like("%ana ng%"))
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                text(
                    "EXPLAIN "
                    + str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
                )
            )
        )
    engine.dispose()
    assert "ix_contacts_search" in plan, plan


def test_role_mailboxes_stored_as_typed_are_lower_cased_as_validation_now_gives_them(db_url: str) -> None:
    """Migration 0010: contacts and email suppressions of Info@, POSTMASTER@ … in the form
    normalize_email gives them now; a suppression held in both spellings is kept once."""
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO contacts (first_name, last_name, email, timezone, language, created_at, updated_at) "
            "VALUES ('A', 'B', 'Info@example.org', 'UTC', 'en', :now, :now), "
            "('C', 'D', 'Ana.Info@example.org', 'UTC', 'en', :now, :now)"
        ), {"now": STAMP})
        conn.execute(text(
            "INSERT INTO suppressions (channel, address, reason, created_at) VALUES "
            "('email', 'POSTMASTER@example.org', 'bounce', :now), "
            "('email', 'postmaster@example.org', 'bounce', :now), "
            "('email', 'Sales@example.org', 'bounce', :now), ('sms', '+19255550100', 'invalid', :now)"
        ), {"now": STAMP})
    command.downgrade(alembic_config(db_url), "0009")
    upgrade(db_url)
    with engine.connect() as conn:
        emails = sorted(conn.execute(text("SELECT email FROM contacts")).scalars())
        suppressed = sorted(conn.execute(text("SELECT address FROM suppressions")).scalars())
    engine.dispose()
    assert emails == ["Ana.Info@example.org", normalize_email("Info@example.org")] == [
        "Ana.Info@example.org", "info@example.org"
    ]
    assert suppressed == ["+19255550100", "postmaster@example.org", "sales@example.org"]
