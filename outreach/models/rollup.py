"""Daily counts of what was handed to a provider, for the dashboard's last 30 days.

Aggregating a month of raw messages on every dashboard view costs about a second at a busy
clinic's scale; a closed day's counts barely change (late status callbacks), so they are
counted once by a beat sweep (``outreach.delivery.rollup``) and re-counted for a few days.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from outreach.models.base import Base


class DeliveryDay(Base):
    """A clinic-local day whose sends are counted in ``delivery_day_counts``."""

    __tablename__ = "delivery_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    # The zone the day was counted in: counts from another zone's day are counted again.
    zone: Mapped[str] = mapped_column(String(64))
    counted_at: Mapped[datetime]


class DeliveryDayCount(Base):
    """Messages handed to a provider on one local day, by channel, campaign and current state."""

    __tablename__ = "delivery_day_counts"
    __table_args__ = (Index("ix_delivery_day_counts_day", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(ForeignKey("delivery_days.day", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))
    # None: not part of a campaign (appointment reminders, replies). No foreign key: the
    # history of a campaign outlives it.
    campaign_id: Mapped[int | None]
    state: Mapped[str] = mapped_column(String(16))
    count: Mapped[int]
