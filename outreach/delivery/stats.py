"""Sends, deliveries and failures over recent days, per channel and per campaign (the dashboard)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from outreach.db import is_postgres
from outreach.models import Campaign, Enrollment, Message, MessageState

FAILED = frozenset({str(MessageState.FAILED), str(MessageState.UNDELIVERED)})
DELIVERED = str(MessageState.DELIVERED)


@dataclass
class Tally:
    sent: int = 0
    delivered: int = 0
    failed: int = 0

    def add(self, state: str, count: int = 1) -> None:
        self.sent += count
        if state == DELIVERED:
            self.delivered += count
        elif state in FAILED:
            self.failed += count


@dataclass
class DeliveryStats:
    days: list[date]
    # channel -> day -> tally, for every day in ``days``.
    by_channel_day: dict[str, dict[date, Tally]] = field(default_factory=dict)
    # campaign name (or "appointment reminders and replies") -> tally over the whole period.
    by_campaign: dict[str, Tally] = field(default_factory=dict)


def recent(session: Session, now: datetime, zone: ZoneInfo, days: int = 30) -> DeliveryStats:
    """Messages handed to a provider in the last ``days`` local days (today included)."""
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=zone)
    stats = DeliveryStats(days=[first + timedelta(days=n) for n in range(days)])
    counts = _daily_counts(session, since, zone)
    for (channel, day, state), count in counts.items():
        per_day = stats.by_channel_day.setdefault(channel, {d: Tally() for d in stats.days})
        if day in per_day:
            per_day[day].add(state, count)
    campaign_rows = session.execute(
        select(Campaign.name, Message.state, func.count())
        .select_from(Message)
        .outerjoin(
            Enrollment,
            and_(Enrollment.id == Message.enrollment_id, Enrollment.contact_id == Message.contact_id),
        )
        .outerjoin(Campaign, Campaign.id == Enrollment.campaign_id)
        .where(Message.sent_at >= since)
        .group_by(Campaign.name, Message.state)
    )
    for name, state, count in campaign_rows:
        label = name or "appointment reminders and replies"
        stats.by_campaign.setdefault(label, Tally()).add(state, int(count))
    return stats


def _daily_counts(session: Session, since: datetime, zone: ZoneInfo) -> Counter[tuple[str, date, str]]:
    """(channel, local day, state) -> messages. PostgreSQL groups by the local day itself (a
    month of a busy clinic is hundreds of thousands of rows); SQLite has no time zones, so
    there the rows are read and grouped here."""
    counts: Counter[tuple[str, date, str]] = Counter()
    if is_postgres(session):
        local_day = func.date(func.timezone(zone.key, Message.sent_at))
        grouped = session.execute(
            select(Message.channel, local_day, Message.state, func.count())
            .where(Message.sent_at >= since)
            .group_by(Message.channel, local_day, Message.state)
        )
        for channel, day, state, count in grouped:
            counts[(channel, day, state)] += int(count)
        return counts
    rows = session.execute(
        select(Message.channel, Message.sent_at, Message.state).where(Message.sent_at >= since)
    )
    for channel, sent_at, state in rows:
        if sent_at is not None:
            counts[(channel, sent_at.astimezone(zone).date(), state)] += 1
    return counts
