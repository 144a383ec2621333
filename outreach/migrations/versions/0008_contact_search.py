"""A trigram index for the staff's contact search (PostgreSQL only).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The expression is CONTACT_SEARCH_TEXT in outreach/models/contacts.py; the two must agree.
SEARCH_TEXT = (
    "lower(first_name || ' ' || last_name || ' | ' || coalesce(email, '') || ' | ' "
    "|| coalesce(phone, '') || ' | ' || coalesce(external_id, ''))"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no trigram index; an embedded clinic's search scans a small table
    # A trusted extension since PostgreSQL 13: the database's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(f"CREATE INDEX ix_contacts_search ON contacts USING gin ({SEARCH_TEXT} gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_contacts_search")
