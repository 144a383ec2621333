"""Booking notices: the one-off messages about visits booked, moved or called off together.

A notice is planned like a reminder (``planning.plan_notice`` / ``plan_step``) and written
through the same path (``materialise.insert_plans``, hence ``outbox.insert_messages``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.appointments import planning
from outreach.appointments.materialise import Context, Outcome, insert_plans, visit_of
from outreach.appointments.planning import LIVE_STATUSES, Planned
from outreach.appointments.policy import ReminderPolicy, Step
from outreach.content.rendering import appointment_context
from outreach.models import Appointment, Contact, Message, MessageState


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

    The patient's notices of those steps are read by the patient alone (a few per visit), then
    their visits by id, and sifted here. A statement that also names the state, the due time or
    the visit's type and status lets a planner whose statistics think the tables small (a new
    database, or one not analysed since a busy day) start from the clinic's waiting messages or
    its appointments instead, and keep that plan: 5 to 15 ms a booking at a few thousand visits,
    growing with every one."""
    candidates = [
        m
        for m in session.scalars(
            select(Message).where(
                Message.contact_id == contact_id, Message.reminder_key.in_(sorted(set(step_keys)))
            )
        )
        if m.state == MessageState.SCHEDULED and m.due_at >= now and m.appointment_id is not None
    ]
    if not candidates:
        return {}
    visits = session.scalars(
        select(Appointment).where(Appointment.id.in_(sorted({m.appointment_id for m in candidates})))
    )
    live = {a.id for a in visits if a.type == kind and a.status in LIVE_STATUSES}
    first: dict[str, Message] = {}
    for message in sorted(candidates, key=lambda m: (m.due_at, m.id)):
        if message.appointment_id in live:
            first.setdefault(message.reminder_key or "", message)
    return first


def _extend_notice(waiting: Message, plan: Planned, now: datetime) -> Planned:
    """Add the plan's visits to the waiting notice; returns the plan recorded as skipped."""
    context = dict(waiting.context or {})
    labels = list(context.get("series_visits") or [])  # type: ignore[call-overload]
    confirms = list(context.get("confirms") or [])  # type: ignore[call-overload]
    labels.extend(plan.context.get("series_visits", []))
    confirms.extend([aid, version] for aid, version in plan.confirms)
    context.update(series_visits=labels, confirms=confirms)
    waiting.context = context
    waiting.updated_at = now
    return plan.skipped(
        f"{planning.COMBINED}included in the message of appointment #{waiting.appointment_id}"
    )


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
