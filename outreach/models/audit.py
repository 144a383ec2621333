"""The audit trail: who looked at or changed what, when and from where."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from outreach.models.base import Base, utcnow


class AuditEvent(Base):
    """Append-only: database triggers refuse UPDATE and DELETE (migration 0004).

    Rows name people and records by id, never by patient data: ``detail`` holds counts, field
    names and outcomes, not phone numbers, names or message text.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_subject", "subject_type", "subject_id"),
        Index("ix_audit_events_actor", "actor"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # user (a staff login), token (an API token), cli (a terminal user), system (automation).
    actor_kind: Mapped[str] = mapped_column(String(8))
    # The login's email, the token's name, the terminal's OS user, or the job's name.
    actor: Mapped[str] = mapped_column(String(254))
    # Dotted verb: contact.view, contact.update, contacts.import, messages.export, inbox.reply, ...
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    # The client's address as the web process saw it (None from the CLI).
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
