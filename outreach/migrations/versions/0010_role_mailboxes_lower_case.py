"""Role mailboxes (Info@, POSTMASTER@) stored in lower case, as email validation now gives them.

The validator lower-cases the local part of the role mailboxes of RFC 2142; the fast path for
everyday addresses kept the case as typed. Contacts and suppressions stored that way would no
longer equal the same address normalised now (an import matching by email, a bounce
suppressing it), so they are rewritten in the form validation gives. Where a suppression
exists in both spellings, the lower-case one is kept.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# email_validator's CASE_INSENSITIVE_MAILBOX_NAMES (2.4), fixed here as this migration's input.
ROLE_MAILBOXES = (
    "info", "marketing", "sales", "support", "abuse", "noc", "security", "postmaster",
    "hostmaster", "usenet", "news", "webmaster", "www", "uucp", "ftp",
)


def _lower_role(address: str) -> str | None:
    """The address with its role mailbox lower-cased, or None when nothing changes."""
    local, at, domain = address.rpartition("@")
    if not at or local.lower() not in ROLE_MAILBOXES or local == local.lower():
        return None
    return f"{local.lower()}@{domain}"


def _candidates(table: str, column: str, where: str = "") -> list[tuple[int, str]]:
    # Both databases: lower() and LIKE, one pattern per role name.
    likes = " OR ".join(f"lower({column}) LIKE '{name}@%'" for name in ROLE_MAILBOXES)
    query = f"SELECT id, {column} FROM {table} WHERE ({likes}){where}"  # noqa: S608  (constants only)
    return [(row[0], row[1]) for row in op.get_bind().execute(sa.text(query))]


def upgrade() -> None:
    bind = op.get_bind()
    for contact_id, email in _candidates("contacts", "email"):
        lowered = _lower_role(email)
        if lowered is not None:
            bind.execute(
                sa.text("UPDATE contacts SET email = :email WHERE id = :id"), {"email": lowered, "id": contact_id}
            )
    for suppression_id, address in _candidates("suppressions", "address", " AND channel = 'email'"):
        lowered = _lower_role(address)
        if lowered is None:
            continue
        taken = bind.execute(
            sa.text("SELECT 1 FROM suppressions WHERE channel = 'email' AND address = :address"),
            {"address": lowered},
        ).first()
        if taken is not None:
            bind.execute(sa.text("DELETE FROM suppressions WHERE id = :id"), {"id": suppression_id})
        else:
            bind.execute(
                sa.text("UPDATE suppressions SET address = :address WHERE id = :id"),
                {"address": lowered, "id": suppression_id},
            )


def downgrade() -> None:
    """Nothing to undo: the lower-case spelling is the same mailbox."""
