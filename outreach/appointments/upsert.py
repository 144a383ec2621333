"""Idempotent upsert by ``external_id``: what a booking system or EHR pushes, as often as it likes.

* unknown external_id → booked (a status of cancelled/completed/no_show for an unknown visit
  is refused: there is nothing to record it on);
* same values again → ``unchanged``: nothing written, no message materialised;
* a different start time or type → a reschedule (new version, reminders replaced);
* duration or location changed → ``updated`` in place (reminders keep their times);
* status cancelled / completed / no_show → the matching service call;
* a visit cannot move to another patient, nor be brought back once cancelled (book a new one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.appointments import service
from outreach.appointments.service import AppointmentError, Change
from outreach.config import Settings
from outreach.errors import Conflict
from outreach.models import Appointment, AppointmentStatus


class AppointmentConflict(AppointmentError, Conflict):
    """The external_id names another patient's appointment."""


PUSHABLE_STATUSES = frozenset(
    str(s)
    for s in (
        AppointmentStatus.BOOKED,
        AppointmentStatus.CONFIRMED,
        AppointmentStatus.CANCELLED,
        AppointmentStatus.COMPLETED,
        AppointmentStatus.NO_SHOW,
    )
)


@dataclass(frozen=True)
class AppointmentData:
    """One appointment as an outside system describes it."""

    contact_id: int
    starts_at: datetime
    type: str
    external_id: str | None = None
    duration_minutes: int | None = None
    location: str | None = None
    timezone: str | None = None
    status: str | None = None  # None: booked (or whatever it already is)


def find_by_external_id(session: Session, external_id: str) -> Appointment | None:
    return session.scalar(select(Appointment).where(Appointment.external_id == external_id))


def find_same_visit(session: Session, data: AppointmentData) -> Appointment | None:
    """Without an external_id, the same patient, start and type is the same visit."""
    return session.scalar(
        select(Appointment)
        .where(
            Appointment.contact_id == data.contact_id,
            Appointment.starts_at == data.starts_at,
            Appointment.type == data.type,
            Appointment.status != str(AppointmentStatus.CANCELLED),
        )
        .order_by(Appointment.id)
        .limit(1)
    )


def upsert(
    session: Session,
    settings: Settings,
    data: AppointmentData,
    *,
    notify: bool = True,
    now: datetime,
) -> Change:
    """Create or update one appointment so it matches ``data``; safe to repeat."""
    at = now
    status = data.status or None
    if status is not None and status not in PUSHABLE_STATUSES:
        raise AppointmentError(f"status must be one of {', '.join(sorted(PUSHABLE_STATUSES))}")
    existing = (
        find_by_external_id(session, data.external_id) if data.external_id else find_same_visit(session, data)
    )
    if existing is None:
        if status not in (None, str(AppointmentStatus.BOOKED), str(AppointmentStatus.CONFIRMED)):
            raise AppointmentError(f"unknown appointment cannot be recorded as {status}")
        change = service.book(
            session,
            settings,
            contact_id=data.contact_id,
            starts_at=data.starts_at,
            type=data.type,
            duration_minutes=data.duration_minutes,
            location=data.location or "",
            external_id=data.external_id,
            timezone=data.timezone,
            now=at,
        )
        if status == AppointmentStatus.CONFIRMED:
            service.confirm(session, settings, change.appointment.id, now=at)
        return change
    if existing.contact_id != data.contact_id:
        raise AppointmentConflict("external_id already belongs to another patient's appointment")
    return _update(session, settings, existing, data, status, notify, at)


def _update(
    session: Session,
    settings: Settings,
    existing: Appointment,
    data: AppointmentData,
    status: str | None,
    notify: bool,
    now: datetime,
) -> Change:
    if status == existing.status or (status is None and existing.status != AppointmentStatus.CANCELLED):
        status = None  # nothing asked of the status
    if existing.status == AppointmentStatus.CANCELLED and status is None:
        if _same_time(existing, data):
            return Change(existing, "unchanged")
        raise AppointmentError("the appointment was cancelled; book a new one instead of changing it")
    if status == AppointmentStatus.CANCELLED:
        return service.cancel(session, settings, existing.id, notify=notify, now=now)
    if status in (AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW):
        close = service.complete if status == AppointmentStatus.COMPLETED else service.no_show
        return close(session, settings, existing.id, now=now)
    change = Change(existing, "unchanged")
    if not _same_time(existing, data):
        appointment, contact = service.lock_appointment(session, existing.id)
        if appointment.status not in service.LIVE:
            raise AppointmentError(f"the appointment is {appointment.status}; it cannot be moved")
        service.check_time(data.starts_at, now)
        change = service.move(
            session,
            settings,
            appointment,
            contact,
            data.starts_at,
            data.timezone,
            notify,
            now,
            new_type=data.type,
        )
    elif _fields_differ(existing, data):
        if data.duration_minutes is not None:
            existing.duration_minutes = data.duration_minutes
        if data.location is not None:
            existing.location = data.location
        service.check_fields(existing.duration_minutes, existing.location, existing.external_id)
        existing.updated_at = now
        change = Change(existing, "updated")
    if status == AppointmentStatus.CONFIRMED:
        confirmed = service.confirm(session, settings, existing.id, now=now)
        if change.action == "unchanged":
            change = confirmed
    return change


def _same_time(existing: Appointment, data: AppointmentData) -> bool:
    return (
        existing.starts_at == data.starts_at
        and existing.type == data.type
        and (data.timezone is None or data.timezone == existing.timezone)
    )


def _fields_differ(existing: Appointment, data: AppointmentData) -> bool:
    return (data.duration_minutes is not None and data.duration_minutes != existing.duration_minutes) or (
        data.location is not None and data.location != existing.location
    )
