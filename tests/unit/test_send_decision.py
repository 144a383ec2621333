"""The send-time decision (``checks.decide``) as a table: Facts built by hand, no database.

Each row states what the patient would notice: the message goes now, waits until a named
instant, or never goes (with the reason staff read).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from outreach.config import Settings, load_settings
from outreach.delivery import caps, checks
from outreach.models import (
    Appointment,
    AppointmentStatus,
    Campaign,
    ConsentState,
    Contact,
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
)

LA = "America/Los_Angeles"
NY = "America/New_York"
# Wed 2026-06-10: 12:00 in Los Angeles is 19:00 UTC.
WED_NOON_LA = datetime(2026, 6, 10, 19, 0, tzinfo=UTC)
PHONE = "+19255550100"
EMAIL = "pat@example.org"


def _settings(**overrides: Any) -> Settings:
    return load_settings(database_url="sqlite://", **overrides)


@dataclass
class Case:
    now: datetime = WED_NOON_LA
    zone: str = LA
    category: str = "education"
    kind: str = "automated"
    channel: str = "sms"
    consent: str | None = ConsentState.GRANTED
    paused: bool = False
    not_after: datetime | None = None
    closures: frozenset[date] = frozenset()
    recent: list[datetime] = field(default_factory=list)  # capped messages that left
    # Automated messages near today for the daily limit: (category, instant, already left).
    loads: list[tuple[str, datetime, bool]] = field(default_factory=list)
    last_inbound: datetime | None = None
    enrollment_state: str | None = None
    appointment: tuple[str, int] | None = None  # (status, version) of the message's visit
    campaign_no_weekends: bool | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def _facts_and_message(case: Case) -> tuple[checks.Facts, Message]:
    contact = Contact(id=1, phone=PHONE, email=EMAIL, timezone=case.zone)
    contact.automation_paused_at = case.now - timedelta(hours=1) if case.paused else None
    message = Message(
        id=10,
        contact_id=1,
        channel=case.channel,
        category=case.category,
        kind=case.kind,
        not_after=case.not_after,
        context={},
        attempts=0,
    )
    facts = checks.Facts(contacts={1: contact}, closures=case.closures)
    if case.consent is not None:
        facts.consents[(1, case.channel, case.category)] = case.consent
    facts.recent[1] = [(900 + i, at) for i, at in enumerate(case.recent)]
    facts.loads[1] = [
        caps.DayLoad(800 + i, category == "care", at, left)
        for i, (category, at, left) in enumerate(case.loads)
    ]
    if case.last_inbound is not None:
        facts.last_inbound[PHONE] = case.last_inbound
    if case.enrollment_state is not None or case.campaign_no_weekends is not None:
        message.enrollment_id = 5
        facts.enrollments[5] = Enrollment(
            id=5, campaign_id=7, contact_id=1, state=case.enrollment_state or EnrollmentState.ACTIVE
        )
        facts.campaigns[7] = Campaign(id=7, slug="c", no_weekends=case.campaign_no_weekends)
    if case.appointment is not None:
        status, version = case.appointment
        message.appointment_id = 3
        message.appointment_version = 1
        facts.appointments[3] = Appointment(id=3, contact_id=1, status=status, version=version)
    return facts, message


def _la(day: int, hour: int, minute: int = 0) -> datetime:
    """An instant given as June 2026 wall-clock time in Los Angeles (UTC-7)."""
    return datetime(2026, 6, day, hour, minute, tzinfo=UTC) + timedelta(hours=7)


def goes(decision: checks.Decision) -> bool:
    return isinstance(decision, checks.Go)


def held_until(instant: datetime, words: str) -> Callable[[checks.Decision], bool]:
    def check(decision: checks.Decision) -> bool:
        return isinstance(decision, checks.Hold) and decision.until == instant and words in decision.reason

    return check


def stopped(state: MessageState, words: str) -> Callable[[checks.Decision], bool]:
    def check(decision: checks.Decision) -> bool:
        return isinstance(decision, checks.Stop) and decision.state == state and words in decision.reason

    return check


ROWS: list[tuple[str, Case, Callable[[checks.Decision], bool]]] = [
    ("inside the window, everything in order: goes", Case(), goes),
    (
        "before the window in the patient's zone: held until 08:00 there",
        Case(now=_la(10, 6, 30)),
        held_until(_la(10, 8), "outside the allowed sending window"),
    ),
    (
        "after the window: held until 08:00 the next morning",
        Case(now=_la(10, 20, 15)),
        held_until(_la(11, 8), "outside the allowed sending window"),
    ),
    (
        "the patient's own zone counts, not the clinic's: 09:00 in LA is 06:00 for a Hawaii patient",
        Case(now=_la(10, 9), zone="Pacific/Honolulu"),
        held_until(datetime(2026, 6, 10, 18, 0, tzinfo=UTC), "outside the allowed sending window"),
    ),
    (
        "a New York patient at 21:00 their time (18:00 in LA): held to the next morning in New York",
        Case(now=_la(10, 18), zone=NY),
        held_until(datetime(2026, 6, 11, 12, 0, tzinfo=UTC), "outside the allowed sending window"),
    ),
    (
        "Saturday with no_weekends: held until Monday 08:00",
        Case(now=_la(13, 11), settings={"no_weekends": True}),
        held_until(_la(15, 8), "outside the allowed sending window"),
    ),
    (
        "Saturday without no_weekends: goes",
        Case(now=_la(13, 11)),
        goes,
    ),
    (
        "the campaign's own no_weekends wins over the settings'",
        Case(now=_la(13, 11), campaign_no_weekends=True),
        held_until(_la(15, 8), "outside the allowed sending window"),
    ),
    (
        "a closure day: held until the next open day's opening",
        Case(closures=frozenset({date(2026, 6, 10)})),
        held_until(_la(11, 8), "outside the allowed sending window"),
    ),
    (
        "frequency cap: one education message already went today: moved to tomorrow's opening",
        Case(recent=[_la(10, 9)]),
        held_until(_la(11, 8), "frequency cap reached"),
    ),
    (
        "frequency cap: yesterday's message does not block today",
        Case(recent=[_la(9, 9)]),
        goes,
    ),
    (
        "weekly cap: three in the last seven days: moved to the next day",
        Case(recent=[_la(5, 9), _la(7, 9), _la(9, 9)]),
        held_until(_la(11, 8), "frequency cap reached"),
    ),
    (
        "care messages are not counted by the education cap",
        Case(category="care", recent=[_la(10, 9)]),
        goes,
    ),
    (
        "daily limit: two care messages already went today: a third reminder is skipped",
        Case(category="care", loads=[("care", _la(10, 8), True), ("care", _la(10, 10), True)]),
        stopped(MessageState.SKIPPED, "combined: at most 2 automated messages per day"),
    ),
    (
        "care first: an education message earlier today does not stop a reminder",
        Case(category="care", loads=[("education", _la(10, 8), True), ("care", _la(10, 10), True)]),
        goes,
    ),
    (
        "care first: one reminder went and one is still due today: education waits for tomorrow",
        Case(loads=[("care", _la(10, 8), True), ("care", _la(10, 16), False)]),
        held_until(_la(11, 8), "care first"),
    ),
    (
        "care first: yesterday's reminders leave today free for education",
        Case(loads=[("care", _la(9, 8), True), ("care", _la(9, 16), True)]),
        goes,
    ),
    (
        "no consent for the channel and category: skipped",
        Case(consent=None),
        stopped(MessageState.SKIPPED, "no education consent for sms"),
    ),
    (
        "consent revoked: skipped",
        Case(consent=ConsentState.REVOKED),
        stopped(MessageState.SKIPPED, "no education consent for sms"),
    ),
    (
        "a staff reply to a patient who opted out of SMS: skipped",
        Case(kind="conversational", category="care", consent=ConsentState.REVOKED),
        stopped(MessageState.SKIPPED, "opted out of sms"),
    ),
    (
        "crisis pause: automated messages held for staff",
        Case(paused=True),
        held_until(WED_NOON_LA + checks.PAUSE_RECHECK, checks.PAUSE_HOLD_REASON),
    ),
    (
        "crisis pause does not hold a staff reply",
        Case(kind="conversational", category="care", paused=True),
        goes,
    ),
    (
        "expired: its time passed before it could be sent",
        Case(not_after=WED_NOON_LA - timedelta(minutes=1)),
        stopped(MessageState.EXPIRED, "its time passed"),
    ),
    (
        "the window opens only after the message stops being useful: skipped",
        Case(now=_la(10, 21), not_after=_la(11, 7)),
        stopped(MessageState.SKIPPED, "opens only after the message stops being useful"),
    ),
    (
        "a staff reply at 23:00 within 4 hours of the patient's own text: goes at once",
        Case(now=_la(10, 23), kind="conversational", category="care", last_inbound=_la(10, 22)),
        goes,
    ),
    (
        "a staff reply at 23:00, the patient last wrote 5 hours ago: held until 08:00",
        Case(now=_la(10, 23), kind="conversational", category="care", last_inbound=_la(10, 18)),
        held_until(_la(11, 8), "outside the allowed sending window"),
    ),
    (
        "the patient left the campaign: cancelled",
        Case(enrollment_state=EnrollmentState.UNENROLLED),
        stopped(MessageState.CANCELLED, "left the campaign"),
    ),
    (
        "a reminder of a cancelled visit: cancelled",
        Case(category="care", appointment=(AppointmentStatus.CANCELLED, 1)),
        stopped(MessageState.CANCELLED, "the appointment was cancelled"),
    ),
    (
        "a reminder of a visit moved since: cancelled",
        Case(category="care", appointment=(AppointmentStatus.BOOKED, 2)),
        stopped(MessageState.CANCELLED, "rescheduled"),
    ),
]


@pytest.mark.parametrize(("case", "expected"), [(c, e) for _, c, e in ROWS], ids=[r[0] for r in ROWS])
def test_send_time_decision(case: Case, expected: Callable[[checks.Decision], bool]) -> None:
    facts, message = _facts_and_message(case)
    decision = checks.decide(facts, _settings(**case.settings), message, case.now)
    assert expected(decision), decision


def test_a_message_that_goes_is_addressed_to_the_patient_and_must_leave_before_the_window_closes() -> None:
    facts, message = _facts_and_message(Case(channel="email"))
    decision = checks.decide(facts, _settings(), message, WED_NOON_LA)
    assert decision == checks.Go(EMAIL, "email", send_by=_la(10, 20))
