"""Consent history is append-only: the database itself refuses UPDATE and DELETE.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE = "consent_events is append-only"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION consent_events_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '{MESSAGE}'; END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            """
            CREATE TRIGGER consent_events_append_only
            BEFORE UPDATE OR DELETE ON consent_events
            FOR EACH ROW EXECUTE FUNCTION consent_events_append_only()
            """
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"""
                CREATE TRIGGER consent_events_no_{action.lower()}
                BEFORE {action} ON consent_events
                BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
                """
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER consent_events_append_only ON consent_events")
        op.execute("DROP FUNCTION consent_events_append_only()")
    else:
        op.execute("DROP TRIGGER consent_events_no_update")
        op.execute("DROP TRIGGER consent_events_no_delete")
