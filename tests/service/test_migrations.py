"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from outreach.db import make_engine
from outreach.migrate import upgrade
from outreach.models import Base, Contact
from outreach.models.contacts import CONTACT_SEARCH_TEXT

# Alembic cannot compare an index on an expression with what PostgreSQL reflects (it normalises
# the expression) nor reflect one on SQLite: checked below by what it is for instead.
EXPRESSION_INDEXES = {"ix_contacts_search"}


def _comparable(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


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
