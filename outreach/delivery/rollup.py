"""Counting each day's sends once, for the dashboard (``outreach.models.rollup``).

``count_days`` (beat, every 10 minutes) counts each clinic-local day of the window that is not
counted yet (or was counted in another zone), and counts today (up to the sweep's own time)
and the last ``RECOUNT_DAYS`` again each time: their messages' states still move as status
callbacks, carrier failures and their one re-send arrive. Days older than the window are
dropped.

``raw_counts`` is the one place the counting rule lives; the dashboard uses it for what no
sweep has counted: what was sent since the last one, and any day it has not reached.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, func, insert, select, text
from sqlalchemy.orm import Session

from outreach.db import is_postgres
from outreach.models import DeliveryDay, DeliveryDayCount, Enrollment, Message

WINDOW_DAYS = 30
RECOUNT_DAYS = 2
ADVISORY_LOCK = 0x6F7574726561  # "outrea": this sweep's own lock key
# (channel, campaign id or None, clinic-local day, state) -> messages handed to a provider.
Key = tuple[str, int | None, date, str]


def day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=zone)


def raw_counts(session: Session, since: datetime, until: datetime, zone: ZoneInfo) -> Counter[Key]:
    """Messages with ``since <= sent_at < until``, counted from the outbox itself.

    PostgreSQL groups by the local day itself; SQLite has no time zones, so there the rows are
    read and grouped here (an embedded clinic is small)."""
    campaign = (
        select(Message.channel, Enrollment.campaign_id, Message.sent_at, Message.state)
        .select_from(Message)
        .outerjoin(
            Enrollment,
            and_(Enrollment.id == Message.enrollment_id, Enrollment.contact_id == Message.contact_id),
        )
        .where(Message.sent_at >= since, Message.sent_at < until)
    )
    counts: Counter[Key] = Counter()
    if is_postgres(session):
        local_day = func.date(func.timezone(zone.key, Message.sent_at))
        grouped = campaign.with_only_columns(
            Message.channel, Enrollment.campaign_id, local_day, Message.state, func.count()
        ).group_by(Message.channel, Enrollment.campaign_id, local_day, Message.state)
        for channel, campaign_id, day, state, count in session.execute(grouped):
            counts[(channel, campaign_id, day, state)] += int(count)
        return counts
    for channel, campaign_id, sent_at, state in session.execute(campaign):
        if sent_at is not None:  # never, by the WHERE clause; the column is nullable
            counts[(channel, campaign_id, sent_at.astimezone(zone).date(), state)] += 1
    return counts


def count_days(session: Session, now: datetime, zone: ZoneInfo) -> list[date]:
    """Count the window's days that need it, today up to ``now``; returns them, oldest first."""
    if is_postgres(session):
        # A second beat's run waits for this one instead of inserting the same days beside it
        # (SQLite's write lock does the same there).
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
    today = now.astimezone(zone).date()
    first = today - timedelta(days=WINDOW_DAYS - 1)
    counted = dict(
        session.execute(select(DeliveryDay.day, DeliveryDay.zone).where(DeliveryDay.day >= first)).all()
    )
    todo = [
        day
        for day in (first + timedelta(days=n) for n in range(WINDOW_DAYS))
        if counted.get(day) != zone.key or day >= today - timedelta(days=RECOUNT_DAYS)
    ]
    # Explicitly, not by the foreign key's cascade: SQLite enforces that only when asked to.
    session.execute(delete(DeliveryDayCount).where(DeliveryDayCount.day < first))
    session.execute(delete(DeliveryDay).where(DeliveryDay.day < first))
    counts = raw_counts(session, day_start(todo[0], zone), now, zone)
    wanted = set(todo)
    session.execute(delete(DeliveryDayCount).where(DeliveryDayCount.day.in_(todo)))
    session.execute(delete(DeliveryDay).where(DeliveryDay.day.in_(todo)))
    session.execute(insert(DeliveryDay), [{"day": d, "zone": zone.key, "counted_at": now} for d in todo])
    rows = [
        {"day": day, "channel": channel, "campaign_id": campaign_id, "state": state, "count": count}
        for (channel, campaign_id, day, state), count in counts.items()
        if day in wanted
    ]
    if rows:
        session.execute(insert(DeliveryDayCount), rows)
    return todo
