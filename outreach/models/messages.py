"""The outbox: every message we will send, are sending or have sent, with its delivery log."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from outreach.models.base import Base, utcnow


class MessageState(enum.StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


# States from which nothing more will happen without a human.
TERMINAL_STATES = frozenset(
    {
        MessageState.DELIVERED,
        MessageState.UNDELIVERED,
        MessageState.FAILED,
        MessageState.CANCELLED,
        MessageState.SKIPPED,
        MessageState.EXPIRED,
    }
)
# A message that occupies its day for frequency caps: planned, in flight, or gone out.
CAP_COUNTED_STATES = frozenset(
    {
        MessageState.SCHEDULED,
        MessageState.QUEUED,
        MessageState.SENDING,
        MessageState.SENT,
        MessageState.DELIVERED,
        MessageState.UNKNOWN,
    }
)
# Not yet handed to a provider: an opt-out or a reschedule can still cancel these.
PENDING_STATES = frozenset({MessageState.SCHEDULED, MessageState.QUEUED})


class MessageKind(enum.StrEnum):
    AUTOMATED = "automated"  # campaign steps and reminders: window and caps apply
    CONVERSATIONAL = "conversational"  # staff replies to a patient's own recent message
    SYSTEM = "system"  # HELP, opt-out confirmation, crisis reply: sent at once, any hour
    ALERT = "alert"  # to on-call staff, not to a patient


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        # The claim query's ORDER BY, restricted to the rows it can match.
        Index(
            "ix_messages_due",
            "due_at",
            "id",
            postgresql_where=text("state = 'scheduled'"),
            sqlite_where=text("state = 'scheduled'"),
        ),
        # The claim's first pass (outreach.delivery.claim): what is not automated, ahead of a
        # backlog. Few rows, and never a bulk enrollment's.
        Index(
            "ix_messages_due_replies",
            "due_at",
            "id",
            postgresql_where=text("state = 'scheduled' AND kind <> 'automated'"),
            sqlite_where=text("state = 'scheduled' AND kind <> 'automated'"),
        ),
        Index("ix_messages_contact_state", "contact_id", "state"),
        # Partial: most rows have no provider id yet, or no appointment, and indexing their
        # NULLs would slow the bulk inserts of enrollment (500k rows at a time). No index on
        # enrollment_id at all: the look-ups by enrollment (enrollment.py, _of_enrollments)
        # go through the contact, which ix_messages_contact_state serves.
        Index(
            "ix_messages_provider_id",
            "provider_id",
            postgresql_where=text("provider_id IS NOT NULL"),
            sqlite_where=text("provider_id IS NOT NULL"),
        ),
        Index(
            "uq_messages_correlation_id",
            "correlation_id",
            unique=True,
            postgresql_where=text("correlation_id IS NOT NULL"),
            sqlite_where=text("correlation_id IS NOT NULL"),
        ),
        # The dashboard's count of today's sends (outreach.delivery.stats); partial, so the
        # bulk inserts of enrollment (no sent_at yet) do not pay for it.
        Index(
            "ix_messages_sent_at",
            "sent_at",
            postgresql_where=text("sent_at IS NOT NULL"),
            sqlite_where=text("sent_at IS NOT NULL"),
        ),
        Index(
            "ix_messages_appointment_id",
            "appointment_id",
            postgresql_where=text("appointment_id IS NOT NULL"),
            sqlite_where=text("appointment_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # Null for alerts to on-call staff, who are not contacts. contact_id and appointment_id
    # are foreign keys with ON DELETE CASCADE, enforced by triggers (migration 0003): on
    # PostgreSQL once per statement, not once per row, because the per-row checks were a
    # third of the time of enrolling 100k contacts (docs/campaigns.md).
    contact_id: Mapped[int | None]
    channel: Mapped[str] = mapped_column(String(8))
    category: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default=MessageKind.AUTOMATED)
    template: Mapped[str | None] = mapped_column(String(200))
    # Extra template variables fixed at materialisation (ids and plain values, never a body).
    context: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    # For messages with no template (staff replies, alerts), the text itself.
    body_override: Mapped[str | None] = mapped_column(Text)
    # Address snapshot for recipients who are not contacts (on-call alerts).
    to_override: Mapped[str | None] = mapped_column(String(254))

    # No foreign key on purpose: enrollments are never deleted (unenroll is a state), messages
    # go with their contact through contact_id, and the per-row check cost a third of the time
    # of enrolling 100k contacts (500k rows).
    enrollment_id: Mapped[int | None]
    step_key: Mapped[str | None] = mapped_column(String(64))
    appointment_id: Mapped[int | None]
    appointment_version: Mapped[int | None]
    reminder_key: Mapped[str | None] = mapped_column(String(64))

    due_at: Mapped[datetime]
    # Never send after this instant (a reminder after its appointment is pointless).
    not_after: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), default=MessageState.SCHEDULED)
    state_reason: Mapped[str | None] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    # A claimed or sending message past its lease is rescued by a sweep.
    lease_until: Mapped[datetime | None]

    # Filled at send time.
    to_address: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)
    segments: Mapped[int | None]
    # Twilio's MessageSid, or an email's Message-ID (which carries the sender's domain).
    provider_id: Mapped[str | None] = mapped_column(String(255))
    provider_status: Mapped[str | None] = mapped_column(String(24))
    # Opaque id put in the per-message StatusCallback URL, linking a callback to this row even
    # when the create response was lost.
    correlation_id: Mapped[str | None] = mapped_column(String(40))
    error_code: Mapped[str | None] = mapped_column(String(16))
    price: Mapped[str | None] = mapped_column(String(16))
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    # Loaded when read (one message's detail page), not with every message: selected with
    # each row of every claim, send, booking and list, they cost two queries per statement.
    attempts_log: Mapped[list[MessageAttempt]] = relationship(
        order_by="MessageAttempt.id", lazy="select", cascade="all, delete-orphan"
    )
    events: Mapped[list[MessageEvent]] = relationship(
        order_by="MessageEvent.id", lazy="select", cascade="all, delete-orphan"
    )


class MessageAttempt(Base):
    """One row per provider call, written before the call and completed after it."""

    __tablename__ = "message_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # accepted | retry | permanent | unknown | skipped | deferred | lost (see delivery.record)
    outcome: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(16))
    # Classified, patient-free description of a failure.
    detail: Mapped[str | None] = mapped_column(String(300))
    # Twilio's MessageSid, or an email's Message-ID (which carries the sender's domain).
    provider_id: Mapped[str | None] = mapped_column(String(255))


class MessageEvent(Base):
    """Every provider status callback, kept as received."""

    __tablename__ = "message_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(24))
    error_code: Mapped[str | None] = mapped_column(String(16))
    payload: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class PendingStatusEvent(Base):
    """A provider status callback as the webhook stored it, waiting to be applied.

    The webhook only appends here (no message row touched, so no lock to wait for); the
    applier (``outreach.delivery.status``) moves each row into ``message_events`` and onto
    its message in batches, and deletes it in the same transaction.
    """

    __tablename__ = "pending_status_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[str] = mapped_column(String(40))
    correlation_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(24))
    error_code: Mapped[str | None] = mapped_column(String(16))
    payload: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime]
    # When the applier may next look at it: later for an event whose message is not found yet.
    not_before: Mapped[datetime]


class RateSlot(Base):
    """Embedded-mode global rate limiter: one row per sender, the next free send instant."""

    __tablename__ = "rate_slots"

    sender: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_free_at: Mapped[datetime]


class RateBooking(Base):
    """Embedded-mode limiter: a slot a send task booked ahead and may yield to a crisis reply
    until it spends it (``outreach.delivery.ratelimit``)."""

    __tablename__ = "rate_bookings"

    sender: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True)
