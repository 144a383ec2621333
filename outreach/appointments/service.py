"""Appointment use cases: book, reschedule, cancel, complete, no-show, confirm, upsert.

Service functions a CLI, a JSON API or a booking-system integration call alike. Each works in
the caller's transaction (the caller commits) and first locks the patient's contact row
(lock order and why: ``outreach.outbox``), so no reminder with the old time goes after a change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import outbox
from outreach.appointments import planning
from outreach.appointments.materialise import (
    Context,
    Outcome,
    confirms_of,
    insert_plans,
    sync_contact,
    visit_of,
)
from outreach.appointments.notices import (
    booking_notice,
    booking_notices,
    cancellation_notice,
    restore_included,
    retell,
    withdraw_included,
)
from outreach.appointments.policy import policy_for
from outreach.config import Settings
from outreach.errors import NotFound, OutreachError
from outreach.models import PENDING_STATES, Appointment, AppointmentStatus, Contact, Message, MessageState
from outreach.outbox.rows import appointment_key_prefix

EXTERNAL_ID_MAX = 64
LOCATION_MAX = 200
LIVE = planning.LIVE_STATUSES
CLOSED = frozenset({str(AppointmentStatus.COMPLETED), str(AppointmentStatus.NO_SHOW)})


class AppointmentError(OutreachError):
    """A change that cannot be made (wrong status, time in the past, unknown type)."""


@dataclass
class Change:
    """What a service call did. ``message_ids``: outbox rows it made due (new or revived)."""

    appointment: Appointment
    action: str
    message_ids: list[int] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    cancelled_messages: int = 0

    def absorb(self, outcome: Outcome) -> Change:
        self.message_ids.extend(i for i in outcome.message_ids if i not in self.message_ids)
        self.skipped.extend(outcome.skipped)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "appointment": describe(self.appointment),
            "message_ids": self.message_ids,
            "skipped": self.skipped,
            "cancelled_messages": self.cancelled_messages,
        }


def describe(appointment: Appointment) -> dict[str, Any]:
    """An appointment as plain JSON-able values (ids, times, codes; no patient names)."""
    local = appointment.starts_at.astimezone(ZoneInfo(appointment.timezone))
    return {
        "id": appointment.id,
        "contact_id": appointment.contact_id,
        "external_id": appointment.external_id,
        "type": appointment.type,
        "starts_at": appointment.starts_at.isoformat(),
        "local_starts_at": local.isoformat(),
        "timezone": appointment.timezone,
        "duration_minutes": appointment.duration_minutes,
        "location": appointment.location,
        "status": appointment.status,
        "version": appointment.version,
        "confirmed_at": appointment.confirmed_at.isoformat() if appointment.confirmed_at else None,
        "reschedule_requested_at": (
            appointment.reschedule_requested_at.isoformat() if appointment.reschedule_requested_at else None
        ),
    }


# ---------------------------------------------------------------- lookups and validation


def get(session: Session, appointment_id: int) -> Appointment:
    appointment = session.get(Appointment, appointment_id)
    if appointment is None:
        raise NotFound(f"appointment {appointment_id} not found")
    return appointment


def lock_appointment(session: Session, appointment_id: int) -> tuple[Appointment, Contact]:
    """The appointment, re-read after locking its contact (a concurrent change is then visible)."""
    contact_id = get(session, appointment_id).contact_id
    contact = outbox.lock_contacts(session, [contact_id])[0]
    appointment = session.scalars(
        select(Appointment).where(Appointment.id == appointment_id).execution_options(populate_existing=True)
    ).one()
    return appointment, contact


def _lock_contact(session: Session, contact_id: int) -> Contact:
    # Planning reads the contact's zone, never its consents (checked when each message goes).
    locked = outbox.lock_contacts(session, [contact_id], consents=False)
    if not locked:
        raise NotFound(f"contact {contact_id} not found")
    return locked[0]


def check_time(starts_at: datetime, now: datetime) -> datetime:
    if starts_at.tzinfo is None:
        raise AppointmentError("the start time needs a time zone")
    if starts_at <= now:
        raise AppointmentError("the start time is in the past")
    return starts_at


def check_fields(duration_minutes: int, location: str, external_id: str | None) -> None:
    if not 5 <= duration_minutes <= 24 * 60:
        raise AppointmentError("duration must be between 5 and 1440 minutes")
    if len(location) > LOCATION_MAX:
        raise AppointmentError(f"location longer than {LOCATION_MAX} characters")
    if external_id is not None and not 0 < len(external_id) <= EXTERNAL_ID_MAX:
        raise AppointmentError(f"external_id must be 1 to {EXTERNAL_ID_MAX} characters")


def _zone_name(settings: Settings, timezone: str | None) -> str:
    name = timezone or settings.clinic_timezone
    try:
        ZoneInfo(name)
    except (KeyError, ValueError) as exc:
        raise AppointmentError("unknown time zone") from exc
    return name


# ---------------------------------------------------------------- booking


def book(
    session: Session,
    settings: Settings,
    *,
    contact_id: int,
    starts_at: datetime,
    type: str,
    duration_minutes: int | None = None,
    location: str = "",
    external_id: str | None = None,
    timezone: str | None = None,
    now: datetime,
) -> Change:
    """Book one visit and materialise its reminders; returns the appointment and message ids."""
    changes = book_series(
        session,
        settings,
        contact_id=contact_id,
        starts=[starts_at],
        type=type,
        duration_minutes=duration_minutes,
        location=location,
        external_ids=[external_id],
        timezone=timezone,
        now=now,
    )
    return changes[0]


def book_series(
    session: Session,
    settings: Settings,
    *,
    contact_id: int,
    starts: Sequence[datetime],
    type: str,
    duration_minutes: int | None = None,
    location: str = "",
    external_ids: Sequence[str | None] | None = None,
    timezone: str | None = None,
    now: datetime,
) -> list[Change]:
    """Book several visits of one patient at once (a course of infusions): one booking
    confirmation lists them all, and the combining rules apply across them."""
    at = now
    if not starts:
        raise AppointmentError("no start times given")
    policy = policy_for(settings.templates_dir, type)
    duration = duration_minutes if duration_minutes is not None else policy.default_duration_minutes
    ids = list(external_ids) if external_ids is not None else [None] * len(starts)
    for external_id in ids:
        check_fields(duration, location, external_id)
    zone_name = _zone_name(settings, timezone)
    contact = _lock_contact(session, contact_id)
    appointments = []
    for start, external_id in zip(starts, ids, strict=True):
        appointment = Appointment(
            contact_id=contact.id,
            external_id=external_id,
            starts_at=check_time(start, at),
            timezone=zone_name,
            duration_minutes=duration,
            type=type,
            location=location,
            status=str(AppointmentStatus.BOOKED),
            version=1,
            created_at=at,
            updated_at=at,
        )
        session.add(appointment)
        appointments.append(appointment)
    session.flush()
    ctx = Context.load(session, settings, contact)
    changes = [Change(a, "booked") for a in appointments]
    changes[0].absorb(booking_notices(session, ctx, contact, policy, policy.at_booking, appointments, at))
    outcome = sync_contact(session, ctx, contact.id, at, new_visits={a.id for a in appointments})
    for change in changes:
        change.absorb(_belonging_to(outcome, change.appointment.id))
    return changes


def _belonging_to(outcome: Outcome, appointment_id: int) -> Outcome:
    """The part of a re-plan about one visit (the re-plan covers all the patient's visits)."""
    prefix = appointment_key_prefix(appointment_id)
    return Outcome(
        [i for i in outcome.message_ids if outcome.visits.get(i) == appointment_id],
        [s for s in outcome.skipped if s["key"].startswith(prefix)],
    )


# ---------------------------------------------------------------- changes


def reschedule(
    session: Session,
    settings: Settings,
    appointment_id: int,
    starts_at: datetime,
    *,
    timezone: str | None = None,
    notify: bool = True,
    now: datetime,
) -> Change:
    """Move a visit: new version, old reminders cancelled, new ones materialised (and a
    notice asking the patient to confirm the new time, when the policy has one)."""
    at = now
    appointment, contact = lock_appointment(session, appointment_id)
    if appointment.status not in LIVE:
        raise AppointmentError(
            f"appointment {appointment_id} is {appointment.status}; it cannot be rescheduled"
        )
    check_time(starts_at, at)
    if starts_at == appointment.starts_at and (timezone is None or timezone == appointment.timezone):
        return Change(appointment, "unchanged")
    return move(session, settings, appointment, contact, starts_at, timezone, notify, at)


def move(
    session: Session,
    settings: Settings,
    appointment: Appointment,
    contact: Contact,
    starts_at: datetime,
    timezone: str | None,
    notify: bool,
    now: datetime,
    *,
    new_type: str | None = None,
) -> Change:
    policy = policy_for(settings.templates_dir, new_type or appointment.type)
    change = Change(appointment, "rescheduled")
    ctx = Context.load(session, settings, contact)  # the patient's, whatever the visit becomes
    change.cancelled_messages = _call_off(
        session, ctx, change, contact.id, "the appointment was rescheduled", now
    )
    appointment.starts_at = starts_at
    appointment.type = policy.type
    if timezone is not None:
        appointment.timezone = _zone_name(settings, timezone)
    appointment.version += 1
    appointment.status = str(AppointmentStatus.BOOKED)
    appointment.confirmed_at = None
    appointment.reschedule_requested_at = None
    appointment.updated_at = now
    session.flush()
    notice = policy.notices.get("rescheduled")
    if notify and notice is not None:
        change.absorb(booking_notice(session, ctx, contact, policy, notice, [appointment], now))
    return change.absorb(sync_contact(session, ctx, contact.id, now))


def _call_off(
    session: Session, ctx: Context, change: Change, contact_id: int, reason: str, now: datetime
) -> int:
    """Cancel the visit's pending messages; take the visit out of the waiting notices of other
    visits that had taken it in (``withdraw_included``); and the other visits a notice of its
    own told of are told of again (``restore_included``: those that had a notice of their own
    taken in; ``retell``: the rest, a series booked with it). Returns the count cancelled.
    Called before the visit changes."""
    appointment = change.appointment
    pending = {
        key: context
        for key, context in session.execute(
            select(Message.reminder_key, Message.context).where(
                Message.appointment_id == appointment.id,
                Message.state.in_([str(s) for s in PENDING_STATES]),
            )
        )
        if key
    }
    cancelled = outbox.cancel_pending(session, reason, appointment_id=appointment.id, now=now)
    withdraw_included(session, contact_id, appointment, reason, now)
    if pending:
        revived = restore_included(session, contact_id, appointment.id, pending, now)
        change.message_ids.extend(message.id for message in revived.values())
        change.message_ids.extend(retell(session, ctx, appointment, pending, revived, now))
    return cancelled


def cancel(
    session: Session,
    settings: Settings,
    appointment_id: int,
    *,
    notify: bool = False,
    now: datetime,
) -> Change:
    """Cancel a visit and its pending reminders; with ``notify``, tell the patient."""
    at = now
    appointment, contact = lock_appointment(session, appointment_id)
    if appointment.status == AppointmentStatus.CANCELLED:
        return Change(appointment, "unchanged")
    if appointment.status in CLOSED:
        raise AppointmentError(
            f"appointment {appointment_id} is {appointment.status}; it cannot be cancelled"
        )
    change = Change(appointment, "cancelled")
    ctx = Context.load(session, settings, contact)
    change.cancelled_messages = _call_off(
        session, ctx, change, contact.id, "the appointment was cancelled", now
    )
    appointment.status = str(AppointmentStatus.CANCELLED)
    appointment.cancelled_at = at
    appointment.updated_at = at
    session.flush()
    notice = (
        ctx.policies[appointment.type].notices.get("cancelled") if appointment.type in ctx.policies else None
    )
    if notify and notice is not None and appointment.starts_at > at:
        change.absorb(cancellation_notice(session, ctx, appointment, notice, at))
    # Freed days and series: reminders of the patient's other visits dropped because of this
    # one come back.
    return change.absorb(sync_contact(session, ctx, contact.id, at))


def complete(
    session: Session, settings: Settings, appointment_id: int, *, now: datetime
) -> Change:
    """The visit happened: stop anything still pending before it, start the post-visit steps."""
    return _close(session, settings, appointment_id, str(AppointmentStatus.COMPLETED), now)


def no_show(
    session: Session, settings: Settings, appointment_id: int, *, now: datetime
) -> Change:
    """The patient did not come: pre-visit and "completed" steps stop, "no_show" steps start."""
    return _close(session, settings, appointment_id, str(AppointmentStatus.NO_SHOW), now)


def _close(session: Session, settings: Settings, appointment_id: int, outcome: str, now: datetime) -> Change:
    appointment, contact = lock_appointment(session, appointment_id)
    if appointment.status == outcome:
        return Change(appointment, "unchanged")
    if appointment.status == AppointmentStatus.CANCELLED:
        raise AppointmentError(f"appointment {appointment_id} is cancelled")
    if appointment.starts_at > now:
        raise AppointmentError(f"appointment {appointment_id} has not started yet")
    change = Change(appointment, outcome)
    # Switching completed <-> no_show (a correction) also stops the other outcome's steps.
    ctx = Context.load(session, settings, contact)
    change.cancelled_messages = _call_off(
        session, ctx, change, contact.id, f"the appointment was marked {outcome}", now
    )
    appointment.status = outcome
    appointment.closed_at = now
    appointment.updated_at = now
    session.flush()
    policy = ctx.policies.get(appointment.type)
    if policy is not None:
        others = [visit_of(a) for a in _contact_appointments(session, contact.id) if a.id != appointment.id]
        plans = planning.plan_post_visit(
            visit_of(appointment), policy, outcome, ctx.zone, ctx.send, now, other_visits=others
        )
        change.absorb(insert_plans(session, plans, contact.id, now))
    return change


def _contact_appointments(session: Session, contact_id: int) -> list[Appointment]:
    return list(session.scalars(select(Appointment).where(Appointment.contact_id == contact_id)))


def confirm(
    session: Session, settings: Settings, appointment_id: int, *, now: datetime
) -> Change:
    """The patient confirmed (a "1" reply, or staff on the phone). Pending requests to confirm
    this visit are no longer needed and are cancelled."""
    at = now
    appointment, _contact = lock_appointment(session, appointment_id)
    if appointment.status == AppointmentStatus.CONFIRMED:
        return Change(appointment, "unchanged")
    if appointment.status not in LIVE:
        raise AppointmentError(
            f"appointment {appointment_id} is {appointment.status}; it cannot be confirmed"
        )
    appointment.status = str(AppointmentStatus.CONFIRMED)
    appointment.confirmed_at = at
    appointment.reschedule_requested_at = None
    appointment.updated_at = at
    change = Change(appointment, "confirmed")
    change.cancelled_messages = _cancel_confirmation_requests(session, appointment, at)
    return change


def _cancel_confirmation_requests(session: Session, appointment: Appointment, now: datetime) -> int:
    rows = session.scalars(
        select(Message).where(
            Message.appointment_id == appointment.id,
            Message.state.in_([str(MessageState.SCHEDULED), str(MessageState.QUEUED)]),
        )
    ).all()
    cancelled = 0
    for message in rows:
        confirms = confirms_of(message)
        if (
            confirms
            and all(pair[0] == appointment.id for pair in confirms)
            and outbox.transition(
                session,
                message.id,
                [MessageState.SCHEDULED, MessageState.QUEUED],
                MessageState.CANCELLED,
                reason="the appointment is already confirmed",
                now=now,
            )
        ):
            cancelled += 1
    return cancelled


def request_reschedule(
    session: Session, settings: Settings, appointment_id: int, *, now: datetime
) -> Change:
    """The patient asked to move the visit ("2"): staff call them; reminders stay until staff
    reschedule or cancel it, so a patient who then keeps the slot is still reminded."""
    at = now
    appointment, _contact = lock_appointment(session, appointment_id)
    if appointment.status not in LIVE:
        raise AppointmentError(f"appointment {appointment_id} is {appointment.status}")
    if appointment.status == AppointmentStatus.RESCHEDULE_REQUESTED:
        return Change(appointment, "unchanged")
    appointment.status = str(AppointmentStatus.RESCHEDULE_REQUESTED)
    appointment.reschedule_requested_at = at
    appointment.confirmed_at = None
    appointment.updated_at = at
    return Change(appointment, "reschedule_requested")
