"""When each reminder of a patient's visits goes out: pure functions, ``now`` passed in.

Timing rules (per message):

* a step's nominal time is computed from the visit's start ("day -1 at 10:00" on the visit's
  local date in the recipient's zone; "-2h" as elapsed time), then moved forward into the
  allowed window with ``outreach.scheduling`` (never our own window logic);
* a step whose nominal time has already passed when the visit is booked or changed is
  skipped with a reason, never sent late;
* a message whose next opening falls at or after its deadline (the visit's start for
  pre-visit messages) is skipped with a reason: shifting never moves a reminder past the visit.

Combining rules (per patient, over all their upcoming visits), so a series of visits (three
infusions a week) does not stack up messages — each skipped message says why, with the
prefix ``COMBINED``, and comes back by itself if the reason goes away (a visit is cancelled):

1. **Once per series**: a step marked ``once_per_series`` (the preparation email) goes only
   for the first visit of a series — visits of one type, each within ``series_gap_days`` of
   the previous — and lists every visit of the series ("your visits: Mon …, Wed …, Fri …").
2. **Visit days**: a step marked ``quiet_on_other_visit_days`` (the day-before confirmation
   request, the next-day check-in) is not sent on a local day when the patient has another
   visit: they are at the clinic that day, and that visit's on-the-day message (a step
   marked ``carries_next_visit``) names the next visit instead.
3. **Asked already**: a step that asks the patient to confirm (the day-before request) is not
   sent on a local day when another message already asks them to confirm the same visit (the
   booking message, when the visit is booked the day before): one message does both.
4. **Daily limit**: never more than ``day_limit`` (settings.care_cap_per_day, default 2)
   automated messages to one patient per local day, counting their other care messages and
   the education/marketing messages that already left (care first: pending ones move instead,
   ``outreach.delivery.caps``); the earliest visit's messages win, then the policy's step order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from outreach.appointments.policy import ReminderPolicy, Step
from outreach.content.rendering import appointment_fields
from outreach.delivery import caps
from outreach.models import AppointmentStatus
from outreach.outbox.rows import appointment_key
from outreach.scheduling import NoOpening, SendPolicy, day_at, local_day_of

COMBINED = caps.COMBINED
# A post-visit message later than this after its nominal time is pointless (and never sent).
POST_VISIT_VALIDITY = timedelta(days=1)
LIVE_STATUSES = frozenset(
    str(s)
    for s in (AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED, AppointmentStatus.RESCHEDULE_REQUESTED)
)


@dataclass(frozen=True)
class Visit:
    """What planning needs to know about an appointment (no patient data)."""

    id: int
    version: int
    type: str
    starts_at: datetime  # UTC
    timezone: str  # the zone the visit's time is shown in (the clinic's)
    status: str = str(AppointmentStatus.BOOKED)
    location: str = ""

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    def label(self) -> str:
        """ "Mon, Mar 3 at 10:00 AM": how a visit is named in a series list."""
        fields = appointment_fields(self.starts_at.astimezone(ZoneInfo(self.timezone)), self.type, "")
        return f"{fields['appointment_date']} at {fields['appointment_time']}"


@dataclass(frozen=True)
class Planned:
    """One outbox row to be: due (``skip_reason`` None) or recorded as skipped with a reason."""

    visit: Visit
    step: Step
    due_at: datetime  # the nominal time when skipped
    not_after: datetime | None
    skip_reason: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    # The visits a "Reply 1 to confirm" in this message refers to: (appointment id, version).
    confirms: tuple[tuple[int, int], ...] = ()

    @property
    def idempotency_key(self) -> str:
        return reminder_key(self.visit.id, self.step, self.visit.version)

    @property
    def sends(self) -> bool:
        return self.skip_reason is None

    def skipped(self, reason: str) -> Planned:
        return replace(self, skip_reason=reason)


def reminder_key(appointment_id: int, step: Step, version: int) -> str:
    kind = "notice" if step.notice else "reminder"
    return appointment_key(appointment_id, kind, step.key, version)


def timed(
    nominal: datetime,
    deadline: datetime | None,
    zone: ZoneInfo,
    policy: SendPolicy,
    now: datetime,
) -> tuple[datetime, str | None]:
    """(due instant, None) or (nominal instant, why it is skipped)."""
    if nominal < now:
        local = nominal.astimezone(zone)
        return (
            nominal,
            f"its time ({local:%Y-%m-%d %H:%M} local) had passed when the visit was booked or changed",
        )
    try:
        due = policy.next_opening(nominal, zone)
    except NoOpening:
        return nominal, "no allowed sending time (window, weekends, closures)"
    if deadline is not None and due >= deadline:
        return nominal, "the allowed sending window opens only after the visit starts"
    return due, None


def nominal_time(step: Step, visit: Visit, zone: ZoneInfo, now: datetime) -> datetime:
    if step.time.at_booking:
        return now
    if step.time.delay is not None:
        return visit.starts_at + step.time.delay
    assert step.time.day_offset is not None and step.time.clock is not None
    return day_at(visit.starts_at, zone, step.time.day_offset, step.time.clock)


def _base_context(policy: ReminderPolicy, step: Step) -> dict[str, Any]:
    context: dict[str, Any] = {**policy.context, **step.context}
    if step.attach_ics:
        context["attach_ics"] = True
    return context


def plan_step(
    visit: Visit, policy: ReminderPolicy, step: Step, zone: ZoneInfo, send: SendPolicy, now: datetime
) -> Planned:
    nominal = nominal_time(step, visit, zone, now)
    deadline = visit.starts_at if step.after is None else nominal + POST_VISIT_VALIDITY
    due, reason = timed(nominal, deadline, zone, send, now)
    confirms = ((visit.id, visit.version),) if step.asks_confirmation else ()
    return Planned(visit, step, due, deadline, reason, _base_context(policy, step), confirms)


def series_of(visits: Sequence[Visit], policies: Mapping[str, ReminderPolicy]) -> list[list[Visit]]:
    """Live visits grouped into series: same type, each within the type's gap of the previous."""
    groups: list[list[Visit]] = []
    by_type: dict[str, list[Visit]] = {}
    for visit in sorted((v for v in visits if v.live), key=lambda v: (v.starts_at, v.id)):
        by_type.setdefault(visit.type, []).append(visit)
    for kind, ordered in by_type.items():
        gap = timedelta(days=policies[kind].series_gap_days) if kind in policies else timedelta(0)
        current: list[Visit] = []
        for visit in ordered:
            if current and visit.starts_at - current[-1].starts_at > gap:
                groups.append(current)
                current = []
            current.append(visit)
        groups.append(current)
    return groups


def plan_pre_visit(
    visits: Sequence[Visit],
    policies: Mapping[str, ReminderPolicy],
    zone: ZoneInfo,
    send: SendPolicy,
    now: datetime,
    *,
    day_limit: int,
    other_days: Counter[date] | None = None,
    asked: Mapping[tuple[int, int], Iterable[date]] | None = None,
) -> list[Planned]:
    """Every pre-visit reminder of a patient's upcoming live visits, timed and combined.

    ``other_days`` counts the patient's other automated messages per local day that the daily
    limit counts (see the module doc). ``asked`` gives, per visit (id, version), the local days
    on which another message (the booking message) asks the patient to confirm it.
    """
    upcoming = [v for v in visits if v.live and v.starts_at > now and v.type in policies]
    plans = [
        plan_step(visit, policies[visit.type], step, zone, send, now)
        for visit in upcoming
        for step in policies[visit.type].pre_visit
    ]
    plans = _once_per_series(plans, series_of(upcoming, policies), now)
    plans = _visit_days(plans, upcoming, zone, policies)
    plans = _asked_already(plans, asked or {}, zone)
    return apply_day_limit(plans, zone, day_limit, other_days or Counter())


def _once_per_series(plans: list[Planned], series: list[list[Visit]], now: datetime) -> list[Planned]:
    out = {id(p): p for p in plans}
    for group in series:
        ids = [v.id for v in group]
        labels = [v.label() for v in group if v.starts_at > now]
        for key in {p.step.key for p in plans if p.step.once_per_series and p.visit.id in ids}:
            members = sorted(
                (p for p in plans if p.step.key == key and p.visit.id in ids),
                key=lambda p: ids.index(p.visit.id),
            )
            carrier = next((p for p in members if p.sends), None)
            if carrier is None:
                continue
            out[id(carrier)] = replace(carrier, context={**carrier.context, "series_visits": labels})
            for other in members[members.index(carrier) + 1 :]:
                out[id(other)] = other.skipped(
                    f"{COMBINED}covered by the {key} message of appointment #{carrier.visit.id}"
                )
    return [out[id(p)] for p in plans]


def _visit_days(
    plans: list[Planned], upcoming: Sequence[Visit], zone: ZoneInfo, policies: Mapping[str, ReminderPolicy]
) -> list[Planned]:
    visit_days: dict[date, list[Visit]] = {}
    for visit in upcoming:
        visit_days.setdefault(local_day_of(visit.starts_at, zone), []).append(visit)
    out: list[Planned] = []
    for plan in plans:
        if plan.sends and plan.step.quiet_on_other_visit_days:
            others = [v for v in visit_days.get(local_day_of(plan.due_at, zone), []) if v.id != plan.visit.id]
            if others:
                plan = plan.skipped(
                    f"{COMBINED}the patient has another visit that day (appointment #{others[0].id})"
                )
        if plan.sends and plan.step.carries_next_visit:
            following = _next_in_series(plan.visit, upcoming, policies)
            plan = replace(
                plan, context={**plan.context, "next_visit": following.label() if following else ""}
            )
        out.append(plan)
    return out


def _asked_already(
    plans: list[Planned], asked: Mapping[tuple[int, int], Iterable[date]], zone: ZoneInfo
) -> list[Planned]:
    out: list[Planned] = []
    for plan in plans:
        days = asked.get((plan.visit.id, plan.visit.version), ())
        if plan.sends and plan.step.asks_confirmation and local_day_of(plan.due_at, zone) in days:
            plan = plan.skipped(f"{COMBINED}the booking message that day already asks to confirm this visit")
        out.append(plan)
    return out


def _next_in_series(
    visit: Visit, upcoming: Sequence[Visit], policies: Mapping[str, ReminderPolicy]
) -> Visit | None:
    gap = timedelta(days=policies[visit.type].series_gap_days)
    later = sorted(
        (v for v in upcoming if v.type == visit.type and v.starts_at > visit.starts_at),
        key=lambda v: v.starts_at,
    )
    if later and later[0].starts_at - visit.starts_at <= gap:
        return later[0]
    return None


def apply_day_limit(
    plans: Iterable[Planned], zone: ZoneInfo, day_limit: int, other_days: Counter[date]
) -> list[Planned]:
    """Skip what would put a local day over the limit: earliest visit first, then step order."""
    listed = list(plans)
    taken: Counter[date] = Counter(other_days)
    decided: dict[str, Planned] = {}
    for plan in sorted(listed, key=lambda p: (p.visit.starts_at, p.visit.id, p.step.position)):
        if plan.sends:
            day = local_day_of(plan.due_at, zone)
            if taken[day] >= day_limit:
                plan = plan.skipped(caps.day_limit_reason(day_limit))
            else:
                taken[day] += 1
        decided[plan.idempotency_key] = plan
    return [decided[p.idempotency_key] for p in listed]


def plan_notice(
    visits: Sequence[Visit],
    policy: ReminderPolicy,
    step: Step,
    zone: ZoneInfo,
    send: SendPolicy,
    now: datetime,
) -> Planned:
    """A one-off message about one or more visits booked together (booking confirmation,
    reschedule or cancellation notice), keyed on the first visit; the others are listed in
    ``series_visits`` and covered by its "Reply 1"."""
    first = min(visits, key=lambda v: (v.starts_at, v.id))
    plan = plan_step(first, policy, step, zone, send, now)
    if step.asks_confirmation:
        plan = replace(plan, confirms=tuple((v.id, v.version) for v in visits))
    ordered = sorted(visits, key=lambda v: (v.starts_at, v.id))
    return replace(plan, context={**plan.context, "series_visits": [v.label() for v in ordered]})


def plan_post_visit(
    visit: Visit,
    policy: ReminderPolicy,
    outcome: str,
    zone: ZoneInfo,
    send: SendPolicy,
    now: datetime,
    *,
    other_visits: Sequence[Visit] = (),
) -> list[Planned]:
    """The steps that start when staff mark a visit completed or no-show."""
    plans = [plan_step(visit, policy, step, zone, send, now) for step in policy.post_visit(outcome)]
    busy = {local_day_of(v.starts_at, zone): v for v in other_visits if v.live and v.id != visit.id}
    out = []
    for plan in plans:
        other = busy.get(local_day_of(plan.due_at, zone))
        if plan.sends and plan.step.quiet_on_other_visit_days and other is not None:
            plan = plan.skipped(f"{COMBINED}the patient has another visit that day (appointment #{other.id})")
        out.append(plan)
    return out
