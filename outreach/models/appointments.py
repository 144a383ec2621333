"""Appointments and their reminder sequences."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from outreach.models.base import Base, utcnow


class AppointmentStatus(enum.StrEnum):
    BOOKED = "booked"
    CONFIRMED = "confirmed"
    RESCHEDULE_REQUESTED = "reschedule_requested"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


class Appointment(Base):
    __tablename__ = "appointments"
    __table_args__ = (
        Index("ix_appointments_starts_at", "starts_at"),
        Index("ix_appointments_contact_starts_at", "contact_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    starts_at: Mapped[datetime]
    # The zone the visit was booked in (the clinic's), for rendering its local time.
    timezone: Mapped[str] = mapped_column(String(64))
    duration_minutes: Mapped[int] = mapped_column(Integer, default=60)
    type: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(24), default=AppointmentStatus.BOOKED)
    # Bumped on every reschedule; reminder idempotency keys carry it.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # When a "Reply 1 to confirm" request last went out for this visit (binds replies to it).
    confirmation_requested_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    # When the patient replied "2" (or staff recorded a request to move the visit).
    reschedule_requested_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    # When staff marked the visit completed or no-show (post-visit steps start from this).
    closed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
