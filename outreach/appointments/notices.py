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
    """A one-off message (booking confirmation, reschedule notice) for visits booked together.

    A booking confirmation still waiting to go out (booked at night, or an import in one
    transaction) absorbs a later booking of the same patient and type instead of stacking a
    second one: the waiting row's list of visits grows, and the new one is recorded skipped.
    """
    visits = [visit_of(a) for a in appointments]
    plan = planning.plan_notice(visits, policy, step, ctx.zone, ctx.send, now)
    waiting = _waiting_notice(session, contact.id, step, policy.type, now) if plan.sends else None
    if waiting is not None:
        return _extend_notice(session, waiting, plan, now)
    return insert_plans(session, [plan], contact.id, now)


def _waiting_notice(
    session: Session, contact_id: int, step: Step, kind: str, now: datetime
) -> Message | None:
    candidates = session.scalars(
        select(Message)
        .join(Appointment, Appointment.id == Message.appointment_id)
        .where(
            Message.contact_id == contact_id,
            Message.reminder_key == step.key,
            Message.state == str(MessageState.SCHEDULED),
            Message.due_at >= now,
            Appointment.type == kind,
            Appointment.status.in_(sorted(LIVE_STATUSES)),
        )
        .order_by(Message.due_at, Message.id)
        .limit(1)
    )
    return candidates.first()


def _extend_notice(session: Session, waiting: Message, plan: Planned, now: datetime) -> Outcome:
    context = dict(waiting.context or {})
    labels = list(context.get("series_visits") or [])  # type: ignore[call-overload]
    confirms = list(context.get("confirms") or [])  # type: ignore[call-overload]
    labels.extend(plan.context.get("series_visits", []))
    confirms.extend([aid, version] for aid, version in plan.confirms)
    context.update(series_visits=labels, confirms=confirms)
    waiting.context = context
    skipped = plan.skipped(
        f"{planning.COMBINED}included in the message of appointment #{waiting.appointment_id}"
    )
    outcome = insert_plans(session, [skipped], waiting.contact_id or 0, now)
    outcome.message_ids.append(waiting.id)
    return outcome


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
