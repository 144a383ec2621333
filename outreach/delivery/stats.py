"""Sends, deliveries and failures over recent days, per channel and per campaign (the dashboard)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.delivery import rollup
from outreach.models import Campaign, DeliveryDay, DeliveryDayCount, MessageState

FAILED = frozenset({str(MessageState.FAILED), str(MessageState.UNDELIVERED)})
DELIVERED = str(MessageState.DELIVERED)
NOT_A_CAMPAIGN = "appointment reminders and replies"
REMOVED_CAMPAIGN = "a removed campaign"


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


def recent(session: Session, now: datetime, zone: ZoneInfo, days: int = rollup.WINDOW_DAYS) -> DeliveryStats:
    """Messages handed to a provider in the last ``days`` local days (today included): what
    the sweep counted from ``delivery_day_counts``, the rest (what was sent since its last run,
    and any day it did not count) from the outbox itself. States are as of the sweep's last
    run for what it counted (10 minutes at most) and as of now for the rest."""
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    stats = DeliveryStats(days=[first + timedelta(days=n) for n in range(days)])
    in_window = (DeliveryDay.day >= first, DeliveryDay.day <= today, DeliveryDay.zone == zone.key)
    counted_at = dict(
        session.execute(select(DeliveryDay.day, DeliveryDay.counted_at).where(*in_window)).all()
    )
    counts: Counter[rollup.Key] = Counter()
    for channel, campaign_id, day, state, count in session.execute(
        select(
            DeliveryDayCount.channel,
            DeliveryDayCount.campaign_id,
            DeliveryDayCount.day,
            DeliveryDayCount.state,
            DeliveryDayCount.count,
        )
        .join(DeliveryDay, DeliveryDay.day == DeliveryDayCount.day)
        .where(*in_window)
    ):
        counts[(channel, campaign_id, day, state)] += count
    counts.update(_not_counted(session, stats.days, counted_at, zone))
    names = dict(
        session.execute(
            select(Campaign.id, Campaign.name).where(Campaign.id.in_({key[1] for key in counts} - {None}))
        ).all()
    )
    for (channel, campaign_id, day, state), count in counts.items():
        per_day = stats.by_channel_day.setdefault(channel, {d: Tally() for d in stats.days})
        if day in per_day:
            per_day[day].add(state, count)
        label = NOT_A_CAMPAIGN if campaign_id is None else names.get(campaign_id, REMOVED_CAMPAIGN)
        stats.by_campaign.setdefault(label, Tally()).add(state, count)
    return stats


def _not_counted(
    session: Session, days: list[date], counted_at: dict[date, datetime], zone: ZoneInfo
) -> Counter[rollup.Key]:
    """From the outbox: the days the sweep has not counted, and what was sent on a day after the
    sweep counted it (today, and yesterday until the first sweep after midnight)."""
    found: Counter[rollup.Key] = Counter()
    whole = [day for day in days if day not in counted_at]
    if whole:
        wanted = set(whole)
        since = rollup.day_start(whole[0], zone)
        until = rollup.day_start(whole[-1] + timedelta(days=1), zone)
        for key, count in rollup.raw_counts(session, since, until, zone).items():
            if key[2] in wanted:
                found[key] += count
    for day, at in counted_at.items():
        end = rollup.day_start(day + timedelta(days=1), zone)
        if at < end:
            found.update(rollup.raw_counts(session, at, end, zone))
    return found
