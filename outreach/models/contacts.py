"""Contacts, their consent ledger and suppressed addresses."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ColumnElement, ForeignKey, Index, String, Text, UniqueConstraint, func, literal_column
from sqlalchemy.orm import Mapped, mapped_column, relationship

from outreach.models.base import Base, utcnow


class Channel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"


class Category(enum.StrEnum):
    CARE = "care"
    EDUCATION = "education"
    MARKETING = "marketing"


class ConsentState(enum.StrEnum):
    GRANTED = "granted"
    REVOKED = "revoked"


class ConsentSource(enum.StrEnum):
    CSV_IMPORT = "csv_import"
    STAFF = "staff"
    WEB_FORM = "web_form"
    KEYWORD = "keyword"
    UNSUBSCRIBE_LINK = "unsubscribe_link"
    PROVIDER = "provider"


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The clinic's own identifier (an EHR's MRN); unique when present.
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str | None] = mapped_column(String(20), index=True)  # E.164
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(16), default="en")
    # Set when a crisis reply pauses all automation to this contact; cleared by staff.
    automation_paused_at: Mapped[datetime | None]
    automation_paused_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    tags: Mapped[list[ContactTag]] = relationship(
        cascade="all, delete-orphan", order_by="ContactTag.tag", lazy="selectin"
    )
    consents: Mapped[list[Consent]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()



# What staff search for (outreach.contacts.service.find_contacts): one lower-case string per
# contact, so one trigram index (PostgreSQL's pg_trgm) serves a substring search of all of it.
_NOTHING: ColumnElement[str] = literal_column("''")
_BETWEEN: ColumnElement[str] = literal_column("' | '")
CONTACT_SEARCH_TEXT = func.lower(
    Contact.first_name
    + literal_column("' '")
    + Contact.last_name
    + _BETWEEN
    + func.coalesce(Contact.email, _NOTHING)
    + _BETWEEN
    + func.coalesce(Contact.phone, _NOTHING)
    + _BETWEEN
    + func.coalesce(Contact.external_id, _NOTHING)
)
Index(
    "ix_contacts_search",
    CONTACT_SEARCH_TEXT.label("search_text"),
    postgresql_using="gin",
    postgresql_ops={"search_text": "gin_trgm_ops"},
).ddl_if(dialect="postgresql")

class ContactTag(Base):
    __tablename__ = "contact_tags"

    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Consent(Base):
    """Current consent for one contact, channel and category. No row means no consent."""

    __tablename__ = "consents"

    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    category: Mapped[str] = mapped_column(String(16), primary_key=True)
    state: Mapped[str] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The ledger event that produced this state.
    event_id: Mapped[int | None] = mapped_column(ForeignKey("consent_events.id"))


class ConsentEvent(Base):
    """Append-only evidence: every grant and revocation ever recorded. Database triggers refuse
    UPDATE and DELETE on this table."""

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_events_contact", "contact_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    channel: Mapped[str] = mapped_column(String(8))
    category: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(24))
    # The exact wording shown or received, or where the consent came from (file name and line).
    evidence: Mapped[str] = mapped_column(Text, default="")
    recorded_by: Mapped[str] = mapped_column(String(100), default="system")
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    inbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))


class Suppression(Base):
    """An address we must not send to on a channel (invalid number, unknown handset, hard bounce)."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(254))
    reason: Mapped[str] = mapped_column(String(200))
    error_code: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
