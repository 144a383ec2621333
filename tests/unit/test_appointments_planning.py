"""Reminder timing and combining: pure table tests, no database."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outreach.appointments import planning
from outreach.appointments.planning import COMBINED, Planned, Visit
from outreach.appointments.policy import PolicyError, StepTime, load_policies, parse_policy
from outreach.scheduling import SendPolicy, Window

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
LA = ZoneInfo("America/Los_Angeles")
POLICIES = load_policies(TEMPLATES)
INFUSION = POLICIES["infusion"]
SEND = SendPolicy(Window(time(8, 0), time(20, 0)))


def la(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LA).astimezone(UTC)


def visit(vid: int, starts_at: datetime, kind: str = "infusion") -> Visit:
    return Visit(id=vid, version=1, type=kind, starts_at=starts_at, timezone="America/Los_Angeles")


def plan(visits: list[Visit], now: datetime, other: Counter[date] | None = None) -> dict[str, Planned]:
    plans = planning.plan_pre_visit(visits, POLICIES, LA, SEND, now, day_limit=2, other_days=other)
    return {f"{p.visit.id}:{p.step.key}": p for p in plans}


def local(instant: datetime) -> str:
    return instant.astimezone(LA).strftime("%a %Y-%m-%d %H:%M")


def booked_notice(visits: list[Visit], now: datetime) -> Planned:
    return planning.plan_notice(visits, INFUSION, INFUSION.at_booking[0], LA, SEND, now)


# (case, booked at, visit start, expected local due per step or a skip-reason fragment)
TIMING_TABLE = [
    (
        "booked 2 h before the visit: only the booking confirmation and the on-the-day message",
        la(2025, 6, 10, 9, 0),
        la(2025, 6, 10, 11, 0),
        {
            "prep": "had passed",
            "confirm_request": "had passed",
            "day_of": "Tue 2025-06-10 09:00",
        },
    ),
    (
        "booked 2 days before: the day-before request and the on-the-day message",
        la(2025, 6, 9, 12, 0),
        la(2025, 6, 11, 10, 0),
        {
            "prep": "had passed",
            "confirm_request": "Tue 2025-06-10 10:00",
            "day_of": "Wed 2025-06-11 08:00",
        },
    ),
    (
        "spring forward: wall-clock steps keep their local time across the DST change",
        la(2025, 3, 1, 12, 0),
        la(2025, 3, 10, 10, 0),
        {
            "prep": "Fri 2025-03-07 10:00",
            "confirm_request": "Sun 2025-03-09 10:00",
            "day_of": "Mon 2025-03-10 08:00",
        },
    ),
    (
        "fall back: the same, the other way",
        la(2025, 10, 25, 12, 0),
        la(2025, 11, 3, 10, 0),
        {
            "prep": "Fri 2025-10-31 10:00",
            "confirm_request": "Sun 2025-11-02 10:00",
            "day_of": "Mon 2025-11-03 08:00",
        },
    ),
    (
        "elapsed offset over the spring-forward night moves into the window, still before the visit",
        la(2025, 3, 1, 12, 0),
        la(2025, 3, 9, 9, 0),
        {"day_of": "Sun 2025-03-09 08:00"},
    ),
    (
        "booked at 22:00 for 08:30 next morning: the on-the-day message moves to 08:00, not past the visit",
        la(2025, 6, 9, 22, 0),
        la(2025, 6, 10, 8, 30),
        {
            "confirm_request": "had passed",
            "day_of": "Tue 2025-06-10 08:00",
        },
    ),
    (
        "booked at 22:00 for 08:00 next morning: shifting would reach the visit, so it is skipped",
        la(2025, 6, 9, 22, 0),
        la(2025, 6, 10, 8, 0),
        {"day_of": "opens only after the visit starts"},
    ),
]


@pytest.mark.parametrize(
    ("case", "now", "starts_at", "expected"), TIMING_TABLE, ids=[t[0] for t in TIMING_TABLE]
)
def test_reminder_timing_table(
    case: str, now: datetime, starts_at: datetime, expected: dict[str, str]
) -> None:
    plans = plan([visit(1, starts_at)], now)
    for key, want in expected.items():
        got = plans[f"1:{key}"]
        if want[0].isupper():
            assert got.skip_reason is None, f"{case}: {key} skipped: {got.skip_reason}"
            assert local(got.due_at) == want, case
            assert got.due_at < starts_at, "a pre-visit reminder must go before the visit"
            assert got.not_after == starts_at
        else:
            assert got.skip_reason is not None and want in got.skip_reason, (
                f"{case}: {key}: {got.skip_reason}"
            )


def test_booking_confirmation_at_22h_waits_for_the_window_but_not_past_the_visit() -> None:
    now = la(2025, 6, 9, 22, 0)
    morning = booked_notice([visit(1, la(2025, 6, 10, 8, 30))], now)
    assert morning.sends and local(morning.due_at) == "Tue 2025-06-10 08:00"
    too_early = booked_notice([visit(1, la(2025, 6, 10, 8, 0))], now)
    assert not too_early.sends and "after the visit starts" in (too_early.skip_reason or "")


def test_booking_confirmation_inside_the_window_goes_right_away() -> None:
    now = la(2025, 6, 9, 14, 3)
    notice = booked_notice([visit(1, la(2025, 6, 12, 10, 0))], now)
    assert notice.due_at == now
    assert notice.confirms == ((1, 1),)


def test_utc_offsets_follow_the_dst_change() -> None:
    plans = plan([visit(1, la(2025, 3, 10, 10, 0))], la(2025, 3, 1, 12, 0))
    assert plans["1:prep"].due_at == datetime(2025, 3, 7, 18, 0, tzinfo=UTC)  # PST, UTC-8
    assert plans["1:confirm_request"].due_at == datetime(2025, 3, 9, 17, 0, tzinfo=UTC)  # PDT, UTC-7


def test_three_visits_a_week_get_one_preparation_email_listing_them_all() -> None:
    now = la(2025, 6, 4, 12, 0)  # the Wednesday before
    visits = [visit(1, la(2025, 6, 9, 10)), visit(2, la(2025, 6, 11, 10)), visit(3, la(2025, 6, 13, 10))]
    plans = plan(visits, now)
    prep = plans["1:prep"]
    assert prep.sends and local(prep.due_at) == "Fri 2025-06-06 10:00"
    assert prep.context["series_visits"] == [
        "Mon, Jun 9 at 10:00 AM",
        "Wed, Jun 11 at 10:00 AM",
        "Fri, Jun 13 at 10:00 AM",
    ]
    assert prep.context.get("attach_ics") is True
    for vid in (2, 3):
        reason = plans[f"{vid}:prep"].skip_reason or ""
        assert reason.startswith(COMBINED) and "appointment #1" in reason
    assert plans["1:day_of"].context["next_visit"] == "Wed, Jun 11 at 10:00 AM"
    assert plans["3:day_of"].context["next_visit"] == ""


def test_a_series_never_puts_more_than_two_automated_messages_on_one_day() -> None:
    now = la(2025, 6, 4, 12, 0)
    visits = [visit(i + 1, la(2025, 6, d, 10)) for i, d in enumerate((9, 10, 11, 12, 13))]
    plans = list(plan(visits, now).values())
    notice = booked_notice(visits, now)
    per_day = Counter(p.due_at.astimezone(LA).date() for p in [*plans, notice] if p.sends)
    assert max(per_day.values()) <= 2, per_day


def test_day_before_request_is_dropped_on_the_day_of_the_previous_visit() -> None:
    now = la(2025, 6, 4, 12, 0)
    visits = [visit(1, la(2025, 6, 9, 10)), visit(2, la(2025, 6, 10, 10))]
    plans = plan(visits, now)
    reason = plans["2:confirm_request"].skip_reason or ""
    assert reason.startswith(COMBINED) and "appointment #1" in reason
    assert plans["1:day_of"].context["next_visit"] == "Tue, Jun 10 at 10:00 AM"
    assert plans["1:confirm_request"].sends


def test_daily_limit_counts_the_patients_other_messages() -> None:
    now = la(2025, 6, 4, 12, 0)
    busy = Counter({date(2025, 6, 8): 2})  # e.g. education mail and an earlier notice that Sunday
    plans = plan([visit(1, la(2025, 6, 9, 10))], now, busy)
    reason = plans["1:confirm_request"].skip_reason or ""
    assert reason.startswith(COMBINED) and "at most 2" in reason
    assert plans["1:day_of"].sends


def test_cancelled_or_past_visits_get_no_reminders() -> None:
    now = la(2025, 6, 4, 12, 0)
    gone = Visit(1, 1, "infusion", la(2025, 6, 9, 10), "America/Los_Angeles", status="cancelled")
    past = visit(2, la(2025, 6, 3, 10))
    assert plan([gone, past], now) == {}


def test_checkin_after_a_completed_visit_is_next_day_and_skips_a_visit_day() -> None:
    start = la(2025, 6, 9, 10)
    now = la(2025, 6, 9, 12)
    alone = planning.plan_post_visit(visit(1, start), INFUSION, "completed", LA, SEND, now)
    assert [p.step.key for p in alone] == ["checkin"]
    assert local(alone[0].due_at) == "Tue 2025-06-10 10:00"
    series = planning.plan_post_visit(
        visit(1, start), INFUSION, "completed", LA, SEND, now, other_visits=[visit(2, la(2025, 6, 10, 10))]
    )
    assert (series[0].skip_reason or "").startswith(COMBINED)
    late = planning.plan_post_visit(visit(1, start), INFUSION, "completed", LA, SEND, la(2025, 6, 12, 9))
    assert "had passed" in (late[0].skip_reason or "")
    missed = planning.plan_post_visit(visit(1, start), INFUSION, "no_show", LA, SEND, now)
    assert [p.step.key for p in missed] == ["missed"]


def test_reminder_keys_carry_the_version() -> None:
    v2 = Visit(7, 2, "infusion", la(2025, 6, 9, 10), "America/Los_Angeles")
    plans = planning.plan_pre_visit([v2], POLICIES, LA, SEND, la(2025, 6, 1, 12), day_limit=2)
    assert {p.idempotency_key for p in plans} >= {"appointment:7:reminder:confirm_request:v2"}


STEP_TIMES = [
    ("booking", StepTime(at_booking=True)),
    ("day -1 at 10:00", StepTime(day_offset=-1, clock=time(10, 0))),
    ("Day 2 at 09:30", StepTime(day_offset=2, clock=time(9, 30))),
    ("-2h", StepTime(delay=-timedelta(hours=2))),
    ("+1d", StepTime(delay=timedelta(days=1))),
]


@pytest.mark.parametrize(("text", "expected"), STEP_TIMES)
def test_step_time_forms(text: str, expected: StepTime) -> None:
    assert StepTime.parse(text) == expected


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"type": "infusion", "steps": [{"key": "a", "channel": "sms", "template": "t", "at": "soon"}]},
            "at:",
        ),
        (
            {"type": "infusion", "steps": [{"key": "a", "channel": "fax", "template": "t", "at": "-2h"}]},
            "channel",
        ),
        ({"type": "infusion", "colour": "red"}, "unknown field"),
        ({"type": "booster"}, "must match the file name"),
        (
            {"type": "infusion", "steps": [{"key": "a", "channel": "sms", "template": "t", "at": "-2h"}] * 2},
            "unique",
        ),
    ],
)
def test_bad_policy_files_are_refused_with_the_file_and_field(data: dict[str, object], problem: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(data, "infusion.yaml")
    assert "infusion.yaml" in str(error.value) and problem in str(error.value)


def test_shipped_policies_cover_the_clinic_types() -> None:
    assert set(POLICIES) == {"consultation", "infusion", "booster", "follow-up"}
    for policy in POLICIES.values():
        for step in policy.steps:
            assert step.template.startswith(f"{step.channel}/appointments/")


def test_appointment_templates_pass_the_template_linter() -> None:
    from outreach.config import load_settings
    from outreach.content.lint import check_templates

    report = check_templates(load_settings(templates_dir=TEMPLATES))
    mine = [p for p in report.problems if "appointments/" in str(p)]
    assert mine == []
    checked = {c.name for c in report.checked}
    for policy in POLICIES.values():
        for step in (*policy.steps, *policy.notices.values()):
            assert step.template in checked, f"{step.template} is not linted"


def test_policy_files_are_read_again_when_they_change_or_appear(tmp_path: Path) -> None:
    folder = tmp_path / "reminders"
    assert load_policies(tmp_path) == {}  # no folder yet: no policies
    folder.mkdir()
    original = (TEMPLATES / "reminders" / "consultation.yaml").read_text()
    policy_file = folder / "consultation.yaml"
    policy_file.write_text(original)
    assert load_policies(tmp_path)["consultation"].default_duration_minutes == 60
    policy_file.write_text(original.replace("default_duration_minutes: 60", "default_duration_minutes: 45"))
    os.utime(policy_file, ns=(policy_file.stat().st_mtime_ns + 10**9,) * 2)  # a later edit
    assert load_policies(tmp_path)["consultation"].default_duration_minutes == 45
    infusion = (TEMPLATES / "reminders" / "infusion.yaml").read_text()
    (folder / "infusion.yml").write_text(infusion)
    (folder / "notes.txt").write_text("not a policy")
    assert sorted(load_policies(tmp_path)) == ["consultation", "infusion"]
