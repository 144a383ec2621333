"""Turning plans into outbox rows, and keeping a patient's rows in line with their plan.

Each change to a patient's visits re-plans *all* their upcoming visits (``sync_contact``):
the planner is deterministic, so rows already right are left alone, new rows are inserted
(idempotently: the key carries the visit's version), rows the combining rules now drop are
skipped with a ``combined:`` reason, and rows skipped that way earlier come back when the
reason went away (a visit of the series was cancelled). Only rows that were never handed to
a provider are ever touched. The caller holds the contact lock (``outbox.lock_contacts``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from outreach.appointments import planning
from outreach.appointments.planning import COMBINED, Planned, Visit
from outreach.appointments.policy import ReminderPolicy, load_policies
from outreach.closures import campaign_policy, load_closures
from outreach.config import Settings
from outreach.delivery import caps
from outreach.delivery.caps import COUNTED_WHEN_SENDING
from outreach.models import (
    CAP_COUNTED_STATES,
    Appointment,
    Campaign,
    Category,
    Contact,
    Enrollment,
    Message,
    MessageKind,
    MessageState,
)
from outreach.outbox import insert_messages_keyed
from outreach.scheduling import SendPolicy, local_day_of

# The patient's automated messages that count towards the daily limit.
COUNTED_STATES = frozenset(str(s) for s in CAP_COUNTED_STATES)
REVIVABLE_STATES = frozenset({str(MessageState.SKIPPED)})
PENDING = (str(MessageState.SCHEDULED), str(MessageState.QUEUED))


@dataclass
class Outcome:
    """What a change materialised: new or revived rows due to send, and what was skipped."""

    message_ids: list[int] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    # Which visit each row of ``message_ids`` is for, where the plan said (message id -> visit).
    visits: dict[int, int] = field(default_factory=dict)

    def merge(self, other: Outcome) -> None:
        self.message_ids.extend(i for i in other.message_ids if i not in self.message_ids)
        self.skipped.extend(other.skipped)
        self.visits.update(other.visits)

    def due(self, message_id: int, plan: Planned) -> None:
        self.message_ids.append(message_id)
        self.visits[message_id] = plan.visit.id


@dataclass(frozen=True)
class Context:
    """What planning needs from the database and settings for one patient."""

    settings: Settings
    policies: dict[str, ReminderPolicy]
    zone: ZoneInfo
    send: SendPolicy

    @classmethod
    def load(cls, session: Session, settings: Settings, contact: Contact) -> Context:
        return cls(
            settings,
            load_policies(settings.templates_dir),
            ZoneInfo(contact.timezone),
            campaign_policy(settings, None, load_closures(session)),
        )


def visit_of(appointment: Appointment) -> Visit:
    return Visit(
        id=appointment.id,
        version=appointment.version,
        type=appointment.type,
        starts_at=appointment.starts_at,
        timezone=appointment.timezone,
        status=appointment.status,
        location=appointment.location,
    )


def row_for(plan: Planned, contact_id: int, now: datetime) -> dict[str, Any]:
    context: dict[str, Any] = dict(plan.context)
    if plan.confirms:
        # Which visits a "1" answering this message confirms (see appointments.replies).
        context["confirms"] = [[aid, version] for aid, version in plan.confirms]
    return {
        "idempotency_key": plan.idempotency_key,
        "contact_id": contact_id,
        "channel": plan.step.channel,
        "category": str(Category.CARE),
        "kind": str(MessageKind.AUTOMATED),
        "template": plan.step.template,
        "context": context,
        "appointment_id": plan.visit.id,
        "appointment_version": plan.visit.version,
        "reminder_key": plan.step.key,
        "due_at": plan.due_at,
        "not_after": plan.not_after,
        "state": str(MessageState.SCHEDULED) if plan.sends else str(MessageState.SKIPPED),
        "state_reason": plan.skip_reason,
    }


def confirms_of(message: Message) -> list[tuple[int, int]]:
    """The (appointment id, version) pairs a message asked the patient to confirm."""
    return confirms_in(message.context)


def confirms_in(context: Any) -> list[tuple[int, int]]:
    raw: Any = context.get("confirms") if isinstance(context, dict) else None
    pairs = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2:
            pairs.append((int(item[0]), int(item[1])))
    return pairs


def insert_plans(
    session: Session, plans: Iterable[Planned], contact_id: int, now: datetime, *, detached: bool = False
) -> Outcome:
    """Insert rows for plans (existing keys keep their row). Returns the due ones' ids.

    ``detached`` rows name no appointment (a cancellation notice: the send-time check would
    cancel any message of a cancelled visit).
    """
    listed = list(plans)
    rows = [row_for(p, contact_id, now) for p in listed]
    if detached:
        rows = [{**row, "appointment_id": None, "appointment_version": None} for row in rows]
    return _outcome(session, listed, insert_messages_keyed(session, rows, now=now))


def _outcome(session: Session, plans: Sequence[Planned], new: dict[str, int]) -> Outcome:
    outcome = Outcome()
    rows = dict(new)
    # Keys that were there already (a repeated change): their rows' ids.
    known = [p.idempotency_key for p in plans if p.idempotency_key not in new]
    if known:
        found = session.execute(
            select(Message.idempotency_key, Message.id).where(Message.idempotency_key.in_(known))
        )
        rows.update({key: message_id for key, message_id in found})
    for plan in plans:
        if plan.sends and plan.idempotency_key in rows:
            outcome.due(rows[plan.idempotency_key], plan)
        elif plan.skip_reason is not None:
            outcome.skipped.append({"key": plan.idempotency_key, "reason": plan.skip_reason})
    return outcome


def live_visits(session: Session, contact_id: int, now: datetime) -> list[Visit]:
    rows = session.scalars(
        select(Appointment).where(
            Appointment.contact_id == contact_id,
            Appointment.status.in_(sorted(planning.LIVE_STATUSES)),
            Appointment.starts_at > now,
        )
    )
    return [visit_of(a) for a in rows]


@dataclass
class Around:
    """A patient's automated messages outside the plan, as the combining rules count them."""

    busy: Counter[date] = field(default_factory=Counter)  # what the daily limit counts, per day
    care: Counter[date] = field(default_factory=Counter)  # care messages, per day
    capped_left: Counter[date] = field(default_factory=Counter)  # education/marketing gone out
    asked: dict[tuple[int, int], set[date]] = field(default_factory=dict)  # (visit, version) -> days
    movable: list[tuple[int, datetime, int | None]] = field(default_factory=list)  # id, due, enrollment


def around(session: Session, contact_id: int, zone: ZoneInfo, *, exclude_keys: set[str]) -> Around:
    """The patient's counted automated messages, except the rows the plan decides."""
    found = Around()
    rows = session.execute(
        select(
            Message.id,
            Message.idempotency_key,
            Message.category,
            Message.state,
            func.coalesce(Message.sent_at, Message.due_at),
            Message.enrollment_id,
            Message.context,
        ).where(
            Message.contact_id == contact_id,
            Message.kind == str(MessageKind.AUTOMATED),
            Message.state.in_(sorted(COUNTED_STATES)),
        )
    )
    for message_id, key, category, state, at, enrollment_id, context in rows:
        if key in exclude_keys:
            continue
        instant = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        day = local_day_of(instant, zone)
        if category == Category.CARE:
            found.busy[day] += 1
            found.care[day] += 1
            for pair in confirms_in(context):
                found.asked.setdefault(pair, set()).add(day)
        elif state in COUNTED_WHEN_SENDING:
            found.busy[day] += 1
            found.capped_left[day] += 1
        elif state == MessageState.SCHEDULED:
            # Care first: a pending education/marketing message moves rather than a reminder.
            found.movable.append((message_id, instant, enrollment_id))
    return found


def pre_visit_keys(visits: Iterable[Visit], policies: dict[str, ReminderPolicy]) -> set[str]:
    return {
        planning.reminder_key(v.id, step, v.version)
        for v in visits
        if v.type in policies
        for step in policies[v.type].pre_visit
    }


def sync_contact(
    session: Session, ctx: Context, contact_id: int, now: datetime, *, new_visits: Collection[int] = ()
) -> Outcome:
    """Re-plan every upcoming visit of one patient and bring their pending rows in line.

    ``new_visits``: visits made in this transaction, whose reminders cannot have rows yet (a
    key names its visit), so the look-up of existing rows leaves their keys out."""
    visits = live_visits(session, contact_id, now)
    others = around(session, contact_id, ctx.zone, exclude_keys=pre_visit_keys(visits, ctx.policies))
    plans = planning.plan_pre_visit(
        visits,
        ctx.policies,
        ctx.zone,
        ctx.send,
        now,
        day_limit=ctx.settings.care_cap_per_day,
        other_days=others.busy,
        asked=others.asked,
    )
    keys = [p.idempotency_key for p in plans if p.visit.id not in new_visits]
    existing = (
        {
            m.idempotency_key: m
            for m in session.scalars(select(Message).where(Message.idempotency_key.in_(keys)))
        }
        if keys
        else {}
    )
    fresh = [p for p in plans if p.idempotency_key not in existing]
    outcome = insert_plans(session, fresh, contact_id, now)
    for plan in plans:
        message = existing.get(plan.idempotency_key)
        if message is None:
            continue
        _align(session, message, plan, contact_id, now, outcome)
    care = others.care + Counter(local_day_of(p.due_at, ctx.zone) for p in plans if p.sends)
    _make_room(session, ctx, others, care, now)
    return outcome


def _make_room(session: Session, ctx: Context, others: Around, care: Counter[date], now: datetime) -> None:
    """Care first: pending education/marketing messages on days the reminders now fill move to
    the next allowed day (``caps.make_room``), with the reason staff see."""
    if not others.movable:
        return
    campaigns = _campaigns_of(session, [e for _, _, e in others.movable if e is not None])
    pending = [
        caps.Pending(mid, due, campaign_policy(ctx.settings, campaigns.get(eid or 0), ctx.send.closures))
        for mid, due, eid in others.movable
    ]
    moved = caps.make_room(pending, ctx.settings, ctx.zone, care, others.capped_left)
    for message_id, due in moved.items():
        _update(
            session,
            message_id,
            [str(MessageState.SCHEDULED)],
            now,
            due_at=due,
            state_reason="care first: the day's automated messages are the visit's reminders; "
            "moved to the next allowed day",
        )


def _campaigns_of(session: Session, enrollment_ids: Sequence[int]) -> dict[int, Campaign]:
    if not enrollment_ids:
        return {}
    rows = session.execute(
        select(Enrollment.id, Campaign)
        .join(Campaign, Campaign.id == Enrollment.campaign_id)
        .where(Enrollment.id.in_(sorted(set(enrollment_ids))))
    )
    return {enrollment_id: campaign for enrollment_id, campaign in rows}


def _align(
    session: Session, message: Message, plan: Planned, contact_id: int, now: datetime, outcome: Outcome
) -> None:
    """One existing row against its plan; conditional updates, so a sender that claimed the
    row meanwhile keeps it (lock order: ``outreach.outbox``)."""
    wanted = row_for(plan, contact_id, now)
    if plan.sends:
        if message.state in PENDING and message.context != wanted["context"]:
            _update(session, message.id, PENDING, now, context=wanted["context"])
        # Dropped earlier only because of another visit that has since changed: back it comes.
        elif (
            message.state in REVIVABLE_STATES
            and (message.state_reason or "").startswith(COMBINED)
            and plan.due_at > now
            and _update(
                session,
                message.id,
                REVIVABLE_STATES,
                now,
                state=str(MessageState.SCHEDULED),
                state_reason=None,
                lease_until=None,
                due_at=plan.due_at,
                context=wanted["context"],
            )
        ):
            outcome.due(message.id, plan)
    elif (
        plan.skip_reason is not None
        and plan.skip_reason.startswith(COMBINED)
        and message.state in PENDING
        and _update(
            session,
            message.id,
            PENDING,
            now,
            state=str(MessageState.SKIPPED),
            state_reason=plan.skip_reason,
            lease_until=None,
        )
    ):
        outcome.skipped.append({"key": plan.idempotency_key, "reason": plan.skip_reason})


def _update(
    session: Session, message_id: int, expected: Iterable[str], now: datetime, **values: Any
) -> bool:
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.state.in_(sorted(expected)))
        .values(updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)
