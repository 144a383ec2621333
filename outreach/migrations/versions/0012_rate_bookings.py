"""The embedded limiter's yielding slots: booked ahead by send tasks, takeable by a crisis reply.

A send task that sleeps towards a slot seconds ahead records it here, and deletes the row when
it wakes to send; a crisis reply takes the earliest row still here instead of queueing behind
them (``outreach.delivery.ratelimit``). Redis keeps the same in a sorted set.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_bookings",
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sender", "at", name=op.f("pk_rate_bookings")),
    )


def downgrade() -> None:
    op.drop_table("rate_bookings")
