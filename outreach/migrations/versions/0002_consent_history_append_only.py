"""Consent history is append-only: the database itself refuses UPDATE and DELETE.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from outreach.migrations.append_only import allow_changes, forbid_changes

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    forbid_changes("consent_events")


def downgrade() -> None:
    allow_changes("consent_events")
