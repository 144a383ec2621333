"""What patients send us, and the staff inbox it lands in."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text
from sqlalchemy import text as sql_text  # the class has a column named text
from sqlalchemy.orm import Mapped, mapped_column

from outreach.models.base import Base, utcnow


class InboundClass(enum.StrEnum):
    CRISIS = "crisis"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    CONFIRM = "confirm"
    RESCHEDULE = "reschedule"
    OTHER = "other"


class InboxState(enum.StrEnum):
    UNREAD = "unread"
    READ = "read"
    HANDLED = "handled"


class InboundMessage(Base):
    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Twilio's MessageSid; the unique key that makes a retried webhook harmless.
    provider_sid: Mapped[str] = mapped_column(String(64), unique=True)
    from_address: Mapped[str] = mapped_column(String(32), index=True)
    to_address: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text, default="")
    opt_out_type: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    classification: Mapped[str | None] = mapped_column(String(16))
    processed_at: Mapped[datetime | None]


class InboxItem(Base):
    """A conversation entry or task for staff: free text, a crisis, a possible cancellation."""

    __tablename__ = "inbox_items"
    __table_args__ = (
        Index("ix_inbox_items_state", "state", "urgent"),
        # The open list, urgent first then newest (read backwards): a few thousand open items
        # among years of handled ones, listed without sorting them.
        Index(
            "ix_inbox_items_open",
            "urgent",
            "created_at",
            "id",
            postgresql_where=sql_text("state <> 'handled'"),
            sqlite_where=sql_text("state <> 'handled'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    inbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    # message | crisis | task
    kind: Mapped[str] = mapped_column(String(16))
    classification: Mapped[str | None] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=InboxState.UNREAD)
    assigned_to: Mapped[str | None] = mapped_column(String(100))
    # For ambiguous replies: the contacts or appointments that could have been meant.
    candidates: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None]
    handled_by: Mapped[str | None] = mapped_column(String(100))
