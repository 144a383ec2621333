"""Booking notices: the one-off messages about visits booked, moved or called off together.

A notice is planned like a reminder (``planning.plan_notice`` / ``plan_step``) and written
through the same path (``materialise.insert_plans``, hence ``outbox.insert_messages``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from outreach.appointments import planning
from outreach.appointments.materialise import Context, Outcome, confirms_in, insert_plans, visit_of
from outreach.appointments.planning import LIVE_STATUSES, Planned
from outreach.appointments.policy import ReminderPolicy, Step
from outreach.content.rendering import appointment_context
from outreach.models import PENDING_STATES, Appointment, Contact, Message, MessageState


def booking_notice(
    session: Session,
    ctx: Context,
    contact: Contact,
    policy: ReminderPolicy,
    step: Step,
    appointments: Sequence[Appointment],
    now: datetime,
) -> Outcome:
    """A one-off message (booking confirmation, reschedule notice) for visits booked together."""
    return booking_notices(session, ctx, contact, policy, [step], appointments, now)


def booking_notices(
    session: Session,
    ctx: Context,
    contact: Contact,
    policy: ReminderPolicy,
    steps: Sequence[Step],
    appointments: Sequence[Appointment],
    now: datetime,
) -> Outcome:
    """The one-off messages of ``steps`` (a booking's confirmation by SMS and by email, say)
    for visits booked together: one look-up of waiting notices and one insert for them all.

    A booking confirmation still waiting to go out (booked at night, or an import in one
    transaction) absorbs a later booking of the same patient and type instead of stacking a
    second one: the waiting row's list of visits grows, and the new one is recorded skipped.
    """
    visits = [visit_of(a) for a in appointments]
    plans = [planning.plan_notice(visits, policy, step, ctx.zone, ctx.send, now) for step in steps]
    keys = [plan.step.key for plan in plans if plan.sends]
    waiting = _waiting_notices(session, contact.id, keys, policy.type, now) if keys else {}
    rows: list[Planned] = []
    extended: dict[int, int] = {}  # plan's index -> the waiting notice it joined
    for index, plan in enumerate(plans):
        found = waiting.get(plan.step.key) if plan.sends else None
        if found is None:
            rows.append(plan)
        else:
            rows.append(_extend_notice(found, plan, now))
            extended[index] = found.id
    written = insert_plans(session, rows, contact.id, now)
    # The ids in the order of the steps, as one call per step would have given them.
    inserted = iter(written.message_ids)
    ids = [extended[i] if i in extended else next(inserted) for i, p in enumerate(plans) if p.sends]
    return Outcome(ids, written.skipped)


def _waiting_notices(
    session: Session, contact_id: int, step_keys: Sequence[str], kind: str, now: datetime
) -> dict[str, Message]:
    """Per step key, the patient's earliest notice of that step still waiting to go out for a
    live visit of this type.

    The patient's notices of those steps are read by the patient alone, a few narrow columns
    each (a patient of years has hundreds, nearly all long sent), then their visits by id, and
    sifted here; only the notices found are loaded whole. A statement that also names the
    state, the due time or the visit's type and status lets a planner whose statistics think
    the tables small (a new database, or one not analysed since a busy day) start from the
    clinic's waiting messages or its appointments instead, and keep that plan: 5 to 15 ms a
    booking at a few thousand visits, growing with every one."""
    rows = session.execute(
        select(Message.id, Message.reminder_key, Message.state, Message.due_at, Message.appointment_id).where(
            Message.contact_id == contact_id, Message.reminder_key.in_(sorted(set(step_keys)))
        )
    )
    waiting = [r for r in rows if r.state == MessageState.SCHEDULED and r.due_at >= now and r.appointment_id]
    if not waiting:
        return {}
    visits = session.execute(
        select(Appointment.id, Appointment.type, Appointment.status).where(
            Appointment.id.in_(sorted({r.appointment_id for r in waiting}))
        )
    )
    live = {v.id for v in visits if v.type == kind and v.status in LIVE_STATUSES}
    first: dict[str, int] = {}
    for row in sorted(waiting, key=lambda r: (r.due_at, r.id)):
        if row.appointment_id in live:
            first.setdefault(row.reminder_key or "", row.id)
    return {key: session.get_one(Message, message_id) for key, message_id in first.items()}


def _extend_notice(waiting: Message, plan: Planned, now: datetime) -> Planned:
    """Add the plan's visits to the waiting notice; returns the plan recorded as skipped."""
    _take_in(waiting, plan.context.get("series_visits", []), plan.confirms, now)
    return plan.skipped(_included_in(waiting.appointment_id))


_INCLUDED = f"{planning.COMBINED}included in the message of appointment #"


def _included_in(appointment_id: int | None) -> str:
    return f"{_INCLUDED}{appointment_id}"


def withdraw_included(
    session: Session, contact_id: int, appointment: Appointment, called_off: str, now: datetime
) -> None:
    """A visit cancelled, moved or closed leaves every message of the patient's other visits
    that tells of it among theirs (a shared booking confirmation, a series' one): its line and
    its "1", and nothing else, so the rest of a series it was booked with stays. That is the
    messages still to go, and those skipped as taken into another that may come back
    (``restore_included``); reminders so changed are re-planned right after (``sync_contact``).
    The visit's own notices that another took in stay down: their reason becomes ``called_off``.

    Called before the visit changes (its line is its time as the patient was told it); the
    caller holds the contact's lock, so no sender renders a notice meanwhile, and one already
    rendered (``sending``) is not changed."""
    line = visit_of(appointment).label()
    rows = session.scalars(
        select(Message).where(
            Message.contact_id == contact_id,
            or_(
                Message.state.in_(sorted(str(s) for s in PENDING_STATES)),
                (Message.state == str(MessageState.SKIPPED)) & Message.state_reason.startswith(_INCLUDED),
            ),
        )
    )
    for message in rows:
        if message.appointment_id == appointment.id:
            if message.state == MessageState.SKIPPED:
                message.state_reason = called_off
                message.updated_at = now
            continue
        context = dict(message.context or {})
        lines = list(context.get("series_visits") or [])  # type: ignore[call-overload]
        confirms = confirms_in(context)
        # A "1" names its visits; a notice asking none is matched by the line alone.
        if not (any(aid == appointment.id for aid, _ in confirms) if confirms else line in lines):
            continue
        if line in lines:
            lines.remove(line)
        context["series_visits"] = lines
        if confirms:
            context["confirms"] = [[aid, version] for aid, version in confirms if aid != appointment.id]
        message.context = context
        message.updated_at = now
    session.flush()


def _take_in(waiting: Message, labels: Any, confirms: Sequence[tuple[int, int]], now: datetime) -> None:
    """Add visits (their labels and the (id, version) pairs a "1" confirms) to a waiting notice."""
    context = dict(waiting.context or {})
    context["series_visits"] = [*(context.get("series_visits") or []), *labels]  # type: ignore[misc]
    context["confirms"] = [*(context.get("confirms") or []), *([a, v] for a, v in confirms)]  # type: ignore[misc]
    waiting.context = context
    waiting.updated_at = now


def restore_included(
    session: Session, contact_id: int, appointment_id: int, called_off: Collection[str], now: datetime
) -> dict[str, Message]:
    """Once a visit's waiting notices are called off (the visit cancelled, moved or closed),
    the patient's other visits they had taken in are told of again: per step, the earliest of
    those visits' own notices goes after all, taking the rest in. Returns, per step key, the
    notice made due.

    ``called_off``: the keys of the visit's messages that were still waiting (a notice already
    sent told the patient of every visit it had taken in). The caller holds the contact's lock
    (``outreach.outbox``'s order) and has just cancelled those messages."""
    reason = _included_in(appointment_id)
    taken = [
        m
        for m in session.scalars(
            select(Message).where(
                Message.contact_id == contact_id,
                Message.state == str(MessageState.SKIPPED),
                Message.state_reason == reason,
                Message.reminder_key.in_(sorted(called_off)),
            )
        )
        if m.appointment_id is not None
    ]
    if not taken:
        return {}
    live = set(
        session.scalars(
            select(Appointment.id).where(
                Appointment.id.in_(sorted({m.appointment_id for m in taken if m.appointment_id})),
                Appointment.status.in_(sorted(LIVE_STATUSES)),
                Appointment.starts_at > now,
            )
        )
    )
    by_step: dict[str, list[Message]] = {}
    for message in sorted(taken, key=lambda m: (m.due_at, m.id)):
        if message.appointment_id in live:
            by_step.setdefault(message.reminder_key or "", []).append(message)
    revived: dict[str, Message] = {}
    for key, (first, *rest) in by_step.items():
        first.state = str(MessageState.SCHEDULED)
        first.state_reason = None
        first.lease_until = None
        first.due_at = max(first.due_at, now)
        first.updated_at = now
        for other in rest:
            _take_in(first, (other.context or {}).get("series_visits") or [], confirms_in(other.context), now)
            other.state_reason = _included_in(first.appointment_id)
            other.updated_at = now
        revived[key] = first
    session.flush()
    return revived


def retell(
    session: Session,
    ctx: Context,
    appointment: Appointment,
    called_off: Mapping[str, Any],
    revived: Mapping[str, Message],
    now: datetime,
) -> list[int]:
    """The other live visits a called-off notice of ``appointment`` told of, and that no notice
    brought back by ``restore_included`` tells of, are told of again: taken into that notice,
    or, where none came back, in a new notice of the same step planned for them (a series
    booked together has its notice on its first visit only; the rest have none of their own).
    Returns the ids of new notices.

    ``called_off``: per step key, the context of the visit's notice that was cancelled, as it
    was (``withdraw_included`` may since have taken the visit's own line out of it)."""
    line = visit_of(appointment).label()
    if not any(_tells_of_others(context, appointment.id, line) for context in called_off.values()):
        return []  # the everyday case: a visit's own notices tell of it alone
    live = [
        a
        for a in session.scalars(
            select(Appointment).where(
                Appointment.contact_id == appointment.contact_id,
                Appointment.id != appointment.id,
                Appointment.status.in_(sorted(LIVE_STATUSES)),
                Appointment.starts_at > now,
            )
        )
    ]
    if not live:
        return []
    starts = {visit_of(a).label(): a.starts_at for a in live}
    new: list[int] = []
    for key, context in called_off.items():
        told = _told_of(context, appointment.id, line, live)
        carrier = revived.get(key)
        if carrier is not None:
            told = _told_of(carrier.context or {}, appointment.id, line, told, missing=True)
            if told:
                _take_in(carrier, [visit_of(a).label() for a in told], _confirms(context, told), now)
            # The visit whose notice came back is the one whose notice was due first, not
            # always the earliest visit.
            _in_time_order(carrier, starts)
            continue
        if not told:
            continue
        policy = ctx.policies.get(appointment.type)
        step = policy.step(key) if policy is not None else None
        if policy is None or step is None or not step.time.at_booking:
            continue  # a reminder: the re-plan after the change brings its combined rows back
        plan = planning.plan_notice([visit_of(a) for a in told], policy, step, ctx.zone, ctx.send, now)
        new.extend(insert_plans(session, [plan], appointment.contact_id, now).message_ids)
    session.flush()
    return new


def _told_of(
    context: Any, appointment_id: int, line: str, visits: Sequence[Appointment], *, missing: bool = False
) -> list[Appointment]:
    """Which of ``visits`` a notice's context tells of (with ``missing``, which it does not):
    by its "1" where it asks one (an id and version), else by its lines."""
    confirms = {pair for pair in confirms_in(context) if pair[0] != appointment_id}
    lines = {text for text in (context.get("series_visits") or []) if text != line}
    asks = bool(confirms_in(context))
    found = [a for a in visits if ((a.id, a.version) in confirms if asks else visit_of(a).label() in lines)]
    return [a for a in visits if a not in found] if missing else found


def _tells_of_others(context: Any, appointment_id: int, line: str) -> bool:
    if not isinstance(context, dict):
        return False
    lines = context.get("series_visits") or []
    if any(aid != appointment_id for aid, _ in confirms_in(context)):
        return True
    return any(text != line for text in lines)


def _confirms(context: Any, visits: Sequence[Appointment]) -> list[tuple[int, int]]:
    """The "1" pairs for ``visits`` when the called-off notice asked one, else none."""
    return [(a.id, a.version) for a in visits] if confirms_in(context) else []


def _in_time_order(message: Message, starts: Mapping[str, datetime]) -> None:
    """The notice's lines in the order of the visits (lines of visits unknown here last)."""
    context = dict(message.context or {})
    lines: list[str] = list(context.get("series_visits") or [])  # type: ignore[call-overload]
    known = sorted((text for text in lines if text in starts), key=lambda text: starts[text])
    context["series_visits"] = [*known, *(text for text in lines if text not in starts)]
    message.context = context


def cancellation_notice(
    session: Session, ctx: Context, appointment: Appointment, step: Step, now: datetime
) -> Outcome:
    """The short "your visit on … is no longer scheduled" message (only when it can still go)."""
    plan = planning.plan_step(
        visit_of(appointment), ctx.policies[appointment.type], step, ctx.zone, ctx.send, now
    )
    if not plan.sends:
        return Outcome(skipped=[{"key": plan.idempotency_key, "reason": plan.skip_reason or ""}])
    # The send-time check cancels any message of a cancelled appointment, so the notice is not
    # tied to it: it carries the visit's date and time as plain values instead.
    plan = replace(plan, context={**plan.context, **appointment_context(appointment)})
    return insert_plans(session, [plan], appointment.contact_id, now, detached=True)
