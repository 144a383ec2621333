"""The claim takes what is not automated first: a partial index for its first pass.

Staff's answers and the replies to a patient's own text (kinds ``conversational``,
``system``, ``alert``) are claimed before any backlog of automated messages due earlier
(``outreach.delivery.claim.claim_due``). Those rows are few; the index holds only them while
they are scheduled, so a bulk enrollment, whose rows are all automated, never writes to it.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "state = 'scheduled' AND kind <> 'automated'"


def upgrade() -> None:
    op.create_index(
        "ix_messages_due_replies",
        "messages",
        ["due_at", "id"],
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_due_replies", table_name="messages")
