"""The dashboard's indexes and daily delivery counts: when messages were sent, the open inbox.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_delivery_days")),
    )
    op.create_table(
        "delivery_day_counts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["day"], ["delivery_days.day"], name=op.f("fk_delivery_day_counts_day_delivery_days"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_day_counts")),
    )
    op.create_index("ix_delivery_day_counts_day", "delivery_day_counts", ["day"], unique=False)
    op.create_index(
        "ix_messages_sent_at",
        "messages",
        ["sent_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NOT NULL"),
        sqlite_where=sa.text("sent_at IS NOT NULL"),
    )
    op.create_index(
        "ix_inbox_items_open",
        "inbox_items",
        ["urgent", "created_at", "id"],
        unique=False,
        postgresql_where=sa.text("state <> 'handled'"),
        sqlite_where=sa.text("state <> 'handled'"),
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_items_open", table_name="inbox_items")
    op.drop_index("ix_messages_sent_at", table_name="messages")
    op.drop_index("ix_delivery_day_counts_day", table_name="delivery_day_counts")
    op.drop_table("delivery_day_counts")
    op.drop_table("delivery_days")
