"""Booking, rescheduling and cancelling visits. Each change is shown first with the reminders
and notices it will schedule (``outreach.appointments.preview``); only "Confirm" makes it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from outreach import appointments, audit
from outreach.appointments.policy import load_policies
from outreach.appointments.preview import preview_change
from outreach.appointments.service import Change
from outreach.db import transaction
from outreach.errors import OutreachError
from outreach.timefmt import staff_time
from outreach.web.deps import get_session_factory, get_settings
from outreach.web.staff import forms
from outreach.web.staff.rendering import render
from outreach.web.staff.security import CheckedForm, Staff, StaffUser, now_of

router = APIRouter()

ACTION_WORDS = {"book": "Book a visit", "reschedule": "Move a visit", "cancel": "Cancel a visit"}


def _starts_at(request: Request, form: FormData, errors: forms.FormErrors) -> datetime | None:
    """The visit's start from the form's date and time, in the clinic's zone."""
    try:
        day = date.fromisoformat(forms.text(form, "day"))
    except ValueError:
        errors.add("day", "Enter the date as year-month-day, for example 2026-06-12")
        return None
    try:
        at = time.fromisoformat(forms.text(form, "time"))
    except ValueError:
        errors.add("time", "Enter the time as hours and minutes, for example 09:30")
        return None
    return datetime.combine(day, at, tzinfo=get_settings(request).clinic_zone)


def _form_page(
    request: Request,
    staff: StaffUser,
    action: str,
    typed: dict[str, str],
    *,
    appointment_id: int | None = None,
    errors: forms.FormErrors | None = None,
    preview: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "title": ACTION_WORDS[action],
        "action": action,
        "typed": typed,
        "appointment_id": appointment_id,
        "types": sorted(load_policies(get_settings(request).templates_dir)),
        "errors": errors or forms.FormErrors(),
        "preview": preview,
    }
    return render(request, "booking.html", context, staff=staff, status_code=status_code)


def _preview_view(request: Request, session: Session, make: Callable[[Session], Change]) -> dict[str, Any]:
    zone = get_settings(request).clinic_zone
    found = preview_change(session, make)
    return {
        "starts": staff_time(found.starts_at, zone, found.timezone),
        "sends": [
            {
                "when": staff_time(s.due_at, zone, found.timezone),
                "by": "text message" if s.channel == "sms" else "email",
                "what": s.what,
            }
            for s in found.sends
        ],
        "skipped": found.skipped,
        "cancelled": found.cancelled,
    }


def _preview_or_make(
    request: Request,
    staff: StaffUser,
    form: FormData,
    action: str,
    make: Callable[[Session], Change],
    *,
    appointment_id: int | None = None,
) -> Response:
    """Without ``confirm``: the change rolled back, shown. With it: the change, committed."""
    typed = forms.values(form)
    errors = forms.FormErrors()
    factory = get_session_factory(request)
    try:
        if forms.text(form, "confirm") != "yes":
            with factory() as session:
                try:
                    preview = _preview_view(request, session, make)
                finally:
                    session.rollback()
            return _form_page(request, staff, action, typed, appointment_id=appointment_id, preview=preview)
        now = now_of(request)
        with transaction(factory) as session:
            change = make(session)
            audit.record(
                session,
                staff.actor,
                f"appointment.{action}",
                now,
                subject_type="appointment",
                subject_id=change.appointment.id,
                detail={"messages": len(change.message_ids), "cancelled": change.cancelled_messages},
            )
            day = change.appointment.starts_at.astimezone(get_settings(request).clinic_zone).date()
    except OutreachError as exc:
        errors.add("day", str(exc)[0].upper() + str(exc)[1:])
        return _form_page(
            request, staff, action, typed, appointment_id=appointment_id, errors=errors, status_code=400
        )
    return RedirectResponse(f"/appointments?day={day.isoformat()}", status_code=303)


@router.get("/appointments/book", response_class=HTMLResponse)
def book_form(request: Request, staff: Staff, contact: str = "") -> HTMLResponse:
    return _form_page(request, staff, "book", {"contact": contact, "time": "10:00"})


@router.post("/appointments/book")
def book(request: Request, staff: Staff, form: CheckedForm) -> Response:
    errors = forms.FormErrors()
    contact = forms.text(form, "contact")
    if not contact.isdigit():
        errors.add("contact", "Enter the patient number (shown on the patient's page)")
    starts_at = _starts_at(request, form, errors)
    if errors or starts_at is None:
        return _form_page(request, staff, "book", forms.values(form), errors=errors, status_code=400)
    settings, now = get_settings(request), now_of(request)

    def make(session: Session) -> Change:
        return appointments.book(
            session,
            settings,
            contact_id=int(contact),
            starts_at=starts_at,
            type=forms.text(form, "type"),
            location=forms.text(form, "location"),
            now=now,
        )

    return _preview_or_make(request, staff, form, "book", make)


@router.get("/appointments/{appointment_id}/change", response_class=HTMLResponse)
def change_form(request: Request, staff: Staff, appointment_id: int) -> HTMLResponse:
    zone = get_settings(request).clinic_zone
    with transaction(get_session_factory(request)) as session:
        local = appointments.get(session, appointment_id).starts_at.astimezone(zone)
    typed = {"day": local.date().isoformat(), "time": local.strftime("%H:%M")}
    return _form_page(request, staff, "reschedule", typed, appointment_id=appointment_id)


@router.post("/appointments/{appointment_id}/reschedule")
def reschedule(request: Request, staff: Staff, form: CheckedForm, appointment_id: int) -> Response:
    errors = forms.FormErrors()
    starts_at = _starts_at(request, form, errors)
    if errors or starts_at is None:
        return _form_page(
            request,
            staff,
            "reschedule",
            forms.values(form),
            appointment_id=appointment_id,
            errors=errors,
            status_code=400,
        )
    settings, now = get_settings(request), now_of(request)

    def make(session: Session) -> Change:
        return appointments.reschedule(session, settings, appointment_id, starts_at, now=now)

    return _preview_or_make(request, staff, form, "reschedule", make, appointment_id=appointment_id)


@router.post("/appointments/{appointment_id}/cancel")
def cancel(request: Request, staff: Staff, form: CheckedForm, appointment_id: int) -> Response:
    settings, now = get_settings(request), now_of(request)
    notify = forms.text(form, "notify") == "yes"

    def make(session: Session) -> Change:
        return appointments.cancel(session, settings, appointment_id, notify=notify, now=now)

    return _preview_or_make(request, staff, form, "cancel", make, appointment_id=appointment_id)
