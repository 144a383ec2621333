"""Campaigns loaded from files, their steps, and who is enrolled."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from outreach.models.base import Base, utcnow


class EnrollmentState(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    UNENROLLED = "unenrolled"


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(16))
    # Optional send window narrower than the global one, "HH:MM" local.
    window_start: Mapped[str | None] = mapped_column(String(5))
    window_end: Mapped[str | None] = mapped_column(String(5))
    # True/False overrides Settings.no_weekends for this campaign; None follows it.
    no_weekends: Mapped[bool | None]
    # The file's content hash at the last sync, so an unchanged file re-syncs as a no-op.
    definition_hash: Mapped[str] = mapped_column(String(64), default="")
    active: Mapped[bool] = mapped_column(default=True)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    steps: Mapped[list[CampaignStep]] = relationship(
        order_by="CampaignStep.position", lazy="selectin", cascade="all, delete-orphan"
    )


class CampaignStep(Base):
    __tablename__ = "campaign_steps"
    __table_args__ = (UniqueConstraint("campaign_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))  # stable across edits of the file
    position: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(8))
    template: Mapped[str] = mapped_column(String(200))
    # Either a day offset at a local wall-clock time, or a plain duration from the start.
    day_offset: Mapped[int | None]
    at_time: Mapped[str | None] = mapped_column(String(5))
    delay_seconds: Mapped[int | None]
    # False once the step is removed from the file; its pending messages are cancelled.
    active: Mapped[bool] = mapped_column(default=True)


class Enrollment(Base):
    __tablename__ = "enrollments"
    # Also the index for look-ups by contact alone (contact_id leads): no second index on it.
    __table_args__ = (UniqueConstraint("contact_id", "campaign_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Foreign keys with ON DELETE CASCADE, enforced by triggers that check once per statement
    # (migration 0003), as for messages: enrollment writes 100k of these rows at a time.
    contact_id: Mapped[int]
    campaign_id: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default=EnrollmentState.ACTIVE)
    # The anchor every step's time is computed from (UTC instant; local rules use the contact's zone).
    started_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set while paused; resuming moves started_at forward by the time spent paused.
    paused_at: Mapped[datetime | None]
    # Channels whose steps are stopped for this enrollment (e.g. ["sms"] after an opt-out).
    stopped_channels: Mapped[list[str]] = mapped_column(JSON, default=list)


class Closure(Base):
    """A day the clinic is closed: automated messages due that local day shift to the next open day."""

    __tablename__ = "closures"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, clinic-local
    reason: Mapped[str] = mapped_column(String(200), default="")
