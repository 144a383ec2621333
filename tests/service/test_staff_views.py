"""Service functions the staff screens read: a patient's timeline, delivery counts, filters."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from outreach import appointments
from outreach.appointments.preview import preview_change
from outreach.appointments.service import Change
from outreach.config import Settings
from outreach.contacts.service import find_contacts
from outreach.contacts.timeline import timeline
from outreach.delivery import rollup, stats
from outreach.delivery.views import export_messages_csv, list_messages
from outreach.models import DeliveryDay, DeliveryDayCount, Message
from tests.support.replies import add_contact, schedule

NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)
LA = ZoneInfo("America/Los_Angeles")


def _sent(session: Session, key: str, at: datetime, state: str) -> None:
    session.execute(update(Message).where(Message.idempotency_key == key).values(state=state, sent_at=at))


def test_the_timeline_puts_consent_and_sent_messages_in_history_and_pending_ones_ahead(
    session: Session,
) -> None:
    contact = add_contact(session)
    schedule(session, contact.id, "sms", "care", "later", NOW + timedelta(days=2))
    schedule(session, contact.id, "sms", "care", "done", NOW - timedelta(days=1))
    _sent(session, "done", NOW - timedelta(days=1), "delivered")
    session.commit()
    found = timeline(session, contact)
    assert [u.due_at for u in found.upcoming] == [NOW + timedelta(days=2)]
    kinds = [e.kind for e in found.entries]
    assert kinds == ["message", "consent", "consent"]
    assert found.entries[0].summary.startswith("Text delivered")
    assert "test consent" in found.entries[1].detail


def test_delivery_counts_fall_on_the_clinics_local_day_per_channel_and_campaign(session: Session) -> None:
    contact = add_contact(session)
    # 02:00 UTC on 10 June is still 9 June in California.
    for key, at, state in (
        ("a", datetime(2026, 6, 10, 2, 0, tzinfo=UTC), "delivered"),
        ("b", datetime(2026, 6, 10, 17, 0, tzinfo=UTC), "failed"),
        ("c", NOW - timedelta(days=40), "delivered"),
    ):
        schedule(session, contact.id, "sms", "care", key, at)
        _sent(session, key, at, state)
    session.commit()
    recent = stats.recent(session, NOW, LA)
    per_day = recent.by_channel_day["sms"]
    june9, june10 = per_day[datetime(2026, 6, 9).date()], per_day[datetime(2026, 6, 10).date()]
    assert (june9.sent, june9.delivered, june10.sent, june10.failed) == (1, 1, 1, 1)
    assert len(recent.days) == 30
    (only,) = recent.by_campaign.values()
    assert (only.sent, only.delivered, only.failed) == (2, 1, 1)


Figures = tuple[dict[tuple[str, date], tuple[int, int, int]], dict[str, tuple[int, int, int]]]


def _figures(recent: stats.DeliveryStats) -> Figures:
    per_day = {
        (channel, day): (t.sent, t.delivered, t.failed)
        for channel, days in recent.by_channel_day.items()
        for day, t in days.items()
        if t.sent
    }
    campaigns = {name: (t.sent, t.delivered, t.failed) for name, t in recent.by_campaign.items()}
    return per_day, campaigns


def test_days_counted_by_the_sweep_give_the_same_figures_and_follow_late_callbacks(
    session: Session,
) -> None:
    contact = add_contact(session)
    for key, channel, at, state in (
        ("old", "sms", NOW - timedelta(days=6), "delivered"),
        ("mail", "email", NOW - timedelta(days=6), "sent"),
        ("yesterday", "sms", NOW - timedelta(days=1), "sent"),
        ("today", "sms", NOW, "failed"),
    ):
        schedule(session, contact.id, channel, "care", key, at)
        _sent(session, key, at, state)
    session.commit()
    from_the_outbox = _figures(stats.recent(session, NOW, LA))

    rollup.count_days(session, NOW - timedelta(days=45), LA)  # a sweep long ago
    counted = rollup.count_days(session, NOW, LA)
    session.commit()
    assert len(counted) == rollup.WINDOW_DAYS and counted[-1] == NOW.astimezone(LA).date()
    kept = set(session.scalars(select(DeliveryDay.day))) | set(session.scalars(select(DeliveryDayCount.day)))
    assert min(kept) == counted[0], "days older than the window are dropped"
    assert _figures(stats.recent(session, NOW, LA)) == from_the_outbox
    again = rollup.count_days(session, NOW, LA)
    assert again == counted[-rollup.RECOUNT_DAYS - 1 :], "only today and the days before it again"

    # Sent after the sweep: counted from the outbox at once.
    schedule(session, contact.id, "sms", "care", "just now", NOW + timedelta(minutes=5))
    _sent(session, "just now", NOW + timedelta(minutes=5), "sent")
    session.commit()
    per_day, _ = _figures(stats.recent(session, NOW + timedelta(minutes=6), LA))
    assert per_day[("sms", NOW.astimezone(LA).date())] == (2, 0, 1)

    # Yesterday's delivery receipt arrives late; the next sweep counts it.
    _sent(session, "yesterday", NOW - timedelta(days=1), "delivered")
    rollup.count_days(session, NOW + timedelta(minutes=10), LA)
    session.commit()
    per_day, _ = _figures(stats.recent(session, NOW + timedelta(minutes=10), LA))
    assert per_day[("sms", (NOW - timedelta(days=1)).astimezone(LA).date())] == (1, 1, 0)
    assert per_day[("sms", NOW.astimezone(LA).date())] == (2, 0, 1), "nothing counted twice"

    # Days counted in another zone are not used for this one: counted afresh from the outbox.
    rollup.count_days(session, NOW, ZoneInfo("Asia/Tokyo"))
    session.commit()
    per_day, campaigns = _figures(stats.recent(session, NOW + timedelta(minutes=10), LA))
    assert per_day[("email", (NOW - timedelta(days=6)).astimezone(LA).date())] == (1, 0, 0)
    assert campaigns == {stats.NOT_A_CAMPAIGN: (5, 2, 1)}


def test_contacts_filter_by_granted_consent(session: Session) -> None:
    texts = add_contact(session, "+15105550101", "Ana")
    add_contact(session, "+15105550102", "Bea", sms=())
    assert [c.id for c in find_contacts(session, consent_to=("sms", "education"))] == [texts.id]


def test_messages_filter_by_channel_and_due_date_and_export_without_text(session: Session) -> None:
    contact = add_contact(session)
    schedule(session, contact.id, "sms", "care", "early", NOW)
    schedule(session, contact.id, "email", "care", "email", NOW)
    schedule(session, contact.id, "sms", "care", "late", NOW + timedelta(days=3))
    session.commit()
    rows = list_messages(session, channel="sms", due_from=NOW, due_until=NOW + timedelta(days=1))
    assert [r["idempotency_key"] for r in rows] == ["early"]
    out = io.StringIO()
    assert export_messages_csv(out, rows) == 1
    header, line = out.getvalue().splitlines()
    assert header.startswith("id,contact_id,channel") and ",early" in line and "body" not in header


def test_a_booking_preview_lists_what_would_be_sent_and_leaves_nothing_behind(
    session: Session, settings: Settings
) -> None:
    contact = add_contact(session)
    starts = datetime(2026, 6, 15, 16, 30, tzinfo=UTC)

    def make(s: Session) -> Change:
        return appointments.book(
            s, settings, contact_id=contact.id, starts_at=starts, type="infusion", now=NOW
        )

    found = preview_change(session, make)
    session.rollback()
    assert found.action == "booked" and found.starts_at == starts
    assert found.sends and all(NOW <= s.due_at < starts for s in found.sends)
    assert session.scalars(select(Message)).all() == []


def test_messages_list_by_due_time_as_scheduled_or_newest_first(session: Session) -> None:
    contact = add_contact(session)
    schedule(session, contact.id, "sms", "care", "first", NOW)
    schedule(session, contact.id, "sms", "care", "second", NOW + timedelta(days=1))
    schedule(session, contact.id, "sms", "care", "third, due soonest", NOW - timedelta(hours=1))
    session.commit()

    def keys(**how: Any) -> list[str]:
        return [r["idempotency_key"] for r in list_messages(session, **how)]

    assert keys() == ["third, due soonest", "first", "second"]
    assert keys(order="created") == ["first", "second", "third, due soonest"]
    assert keys(order="newest") == ["third, due soonest", "second", "first"]
    first_id = list_messages(session, order="created", limit=1)[0]["id"]
    assert keys(order="created", after_id=first_id) == ["second", "third, due soonest"]
    assert keys(order="newest", after_id=first_id) == []
    assert keys(after_id=first_id) == ["second"]
