"""The care-first rule's pure parts (``outreach.delivery.caps``): which days are full, where a
pending education message moves, and the planner's asked-already rule. No database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from outreach.appointments import planning
from outreach.appointments.planning import Visit
from outreach.appointments.policy import load_policies
from outreach.config import load_settings
from outreach.delivery import caps
from outreach.scheduling import SendPolicy, Window

LA = ZoneInfo("America/Los_Angeles")
SETTINGS = load_settings(database_url="sqlite://")  # care_cap_per_day 2, cap_per_day 1, cap_per_week 3
POLICY = SendPolicy(Window(time(9, 0), time(19, 0)))
POLICIES = load_policies(Path(__file__).resolve().parents[2] / "templates")


def la(day: int, hour: int, minute: int = 0) -> datetime:
    """March 2026 wall-clock time in Los Angeles (Monday is the 2nd)."""
    return datetime(2026, 3, day, hour, minute, tzinfo=LA).astimezone(UTC)


def local(instant: datetime) -> str:
    return instant.astimezone(LA).strftime("%a %H:%M")


def test_a_day_is_full_for_education_when_care_and_counted_education_reach_the_limit() -> None:
    care = Counter({date(2026, 3, 2): 2, date(2026, 3, 3): 1})
    capped = Counter({date(2026, 3, 3): 1, date(2026, 3, 4): 1})
    assert caps.full_days(care, capped, 2) == {date(2026, 3, 2), date(2026, 3, 3)}


def test_a_full_day_is_closed_to_a_campaign_for_that_patient_only() -> None:
    mine = caps.care_first_policy(POLICY, SETTINGS, LA, [la(2, 8, 30), la(2, 10)], [])
    assert date(2026, 3, 2) in mine.closures and POLICY.closures == frozenset()
    assert local(mine.next_opening(la(2, 10), LA)) == "Tue 09:00"
    assert caps.care_first_policy(POLICY, SETTINGS, LA, [la(2, 10)], []) is POLICY


def test_the_latest_education_message_of_a_full_day_moves_to_the_next_day_with_room() -> None:
    care = Counter({date(2026, 3, 2): 1, date(2026, 3, 3): 2})
    pending = [caps.Pending(1, la(2, 10), POLICY), caps.Pending(2, la(2, 15), POLICY)]
    moved = caps.make_room(pending, SETTINGS, LA, care, Counter())
    # Monday keeps one (1 care + 1 education); Tuesday is full of reminders; Wednesday opens.
    assert {mid: local(due) for mid, due in moved.items()} == {2: "Wed 09:00"}


def test_education_that_already_went_counts_and_the_weekly_cap_is_kept_when_moving() -> None:
    care = Counter({date(2026, 3, 4): 2})
    left = Counter({date(2026, 3, 2): 1, date(2026, 3, 3): 1})
    moved = caps.make_room([caps.Pending(7, la(4, 10), POLICY)], SETTINGS, LA, care, left)
    # Wednesday is full; Thursday would be the third education message in seven days (limit 3
    # allows it), so Thursday it is. With one more gone out, the week is full until Monday.
    assert local(moved[7]) == "Thu 09:00"
    left[date(2026, 3, 1)] += 1
    moved = caps.make_room([caps.Pending(7, la(4, 10), POLICY)], SETTINGS, LA, care, left)
    assert moved[7].astimezone(LA).date() == date(2026, 3, 8)


def test_the_day_before_request_is_not_sent_on_the_day_the_booking_text_already_asks() -> None:
    tuesday = Visit(id=4, version=1, type="follow-up", starts_at=la(3, 14), timezone="America/Los_Angeles")
    plans = planning.plan_pre_visit(
        [tuesday], POLICIES, LA, POLICY, la(2, 8, 30), day_limit=2, asked={(4, 1): {date(2026, 3, 2)}}
    )
    [request] = [p for p in plans if p.step.key == "confirm_request"]
    assert request.skip_reason == "combined: the booking message that day already asks to confirm this visit"
    # A booking text asking about the previous version of the visit does not count.
    plans = planning.plan_pre_visit(
        [tuesday], POLICIES, LA, POLICY, la(2, 8, 30), day_limit=2, asked={(4, 0): {date(2026, 3, 2)}}
    )
    assert all(p.sends for p in plans if p.step.key == "confirm_request")
