"""Campaigns (steps, timing, window, preview, enrolling) and appointments (day and week views)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from outreach import audit
from outreach.appointments.dayview import day_view
from outreach.campaigns import eligibility, files, reports
from outreach.campaigns.enroll import enroll as enroll_contacts
from outreach.campaigns.preview import preview
from outreach.db import transaction
from outreach.errors import NotFound, OutreachError
from outreach.models import Campaign
from outreach.timefmt import long_date, staff_clock, staff_time
from outreach.web.deps import get_session_factory, get_settings
from outreach.web.staff import forms
from outreach.web.staff.rendering import render
from outreach.web.staff.security import CheckedForm, Staff, StaffUser, now_of

router = APIRouter()

CONFIRMATION_WORDS = {
    "booked": "booked",
    "cancelled": "cancelled",
    "completed": "attended",
    "no_show": "did not come",
}


def visit_row(visit: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """A day-view entry for a table: clinic time, the patient's where it differs."""
    return {
        "id": visit["id"],
        "time": staff_clock(datetime.fromisoformat(visit["starts_at"]), zone, visit["timezone"]),
        "contact_id": visit["contact_id"],
        "patient": visit["contact_name"],
        "type": visit["type"],
        "location": visit["location"],
        "confirmation": CONFIRMATION_WORDS.get(visit["confirmation"], visit["confirmation"]),
    }


def step_timing_words(step_day: int | None, at: str | None, delay_seconds: int | None) -> str:
    if delay_seconds is not None:
        minutes = delay_seconds // 60
        return (
            f"{minutes // 60} hours {minutes % 60} minutes after enrolling"
            if minutes >= 60
            else (f"{minutes} minutes after enrolling")
        )
    day = "the day of enrolling" if not step_day else f"day {step_day} after enrolling"
    return f"{day}, at {at} local time" if at else day


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_list(request: Request, staff: Staff, synced: int | None = None) -> HTMLResponse:
    flash = "" if synced is None else f"Campaign files loaded: {synced} campaign(s) changed."
    return campaigns_page(request, staff, flash=flash)


def campaigns_page(
    request: Request,
    staff: StaffUser,
    *,
    flash: str = "",
    errors: forms.FormErrors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = get_settings(request)
    with transaction(get_session_factory(request)) as session:
        rows = [
            {
                "slug": c.slug,
                "name": c.name,
                "category": c.category,
                "active": c.active,
                "window": files.window_label(c, settings),
                "steps": [
                    {
                        "key": s.key,
                        "channel": s.channel,
                        "when": step_timing_words(s.day_offset, s.at_time, s.delay_seconds),
                    }
                    for s in c.steps
                    if s.active
                ],
            }
            for c in session.scalars(select(Campaign).order_by(Campaign.name))
        ]
    errors = errors or forms.FormErrors()
    context = {"title": "Campaigns", "campaigns": rows, "flash": flash, "errors": errors}
    return render(request, "campaigns.html", context, staff=staff, status_code=status_code)


def _campaign_page(
    request: Request,
    staff: Staff,
    slug: str,
    *,
    contact: str = "",
    errors: forms.FormErrors | None = None,
    report: reports.EnrollmentReport | None = None,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = get_settings(request)
    zone = settings.clinic_zone
    now = now_of(request)
    errors = errors or forms.FormErrors()
    previews: list[dict[str, Any]] = []
    with transaction(get_session_factory(request)) as session:
        campaign = session.scalar(select(Campaign).where(Campaign.slug == slug))
        if campaign is None:
            raise NotFound(f"no campaign {slug}")
        if contact:
            try:
                steps = preview(session, settings, slug, int(contact), start=None, now=now)
            except (ValueError, NotFound):
                errors.add("contact", "Enter the number of an existing patient (shown on their page)")
            else:
                audit.record(
                    session,
                    staff.actor,
                    "campaign.preview",
                    now,
                    subject_type="contact",
                    subject_id=int(contact),
                    detail={"campaign": slug},
                )
                previews = [
                    {
                        "key": s.key,
                        "channel": s.channel,
                        "when": staff_time(
                            s.due_at, zone, str(s.local_due_at.tzinfo) if s.local_due_at else None
                        ),
                        "sends": "will send" if s.would_send else f"will not send: {s.reason}",
                        "subject": s.subject,
                        "text": s.text,
                        "segments": s.segments,
                        "encoding": s.encoding,
                        "warnings": s.warnings,
                    }
                    for s in steps
                ]
        context = {
            "title": campaign.name,
            "campaign": {
                "slug": campaign.slug,
                "name": campaign.name,
                "description": campaign.description,
                "category": campaign.category,
                "window": files.window_label(campaign, settings),
            },
            "contact": contact,
            "previews": previews,
            "errors": errors,
            "typed": typed or {},
            "report": _report_view(report) if report else None,
        }
    return render(request, "campaign.html", context, staff=staff, status_code=status_code)


def _report_view(report: reports.EnrollmentReport) -> dict[str, Any]:
    return {
        "enrolled": len(report.enrolled),
        "already": len(report.already_enrolled),
        "messages": report.messages_created,
        "refused": sorted(report.refused.items()),
    }


@router.get("/campaigns/{slug}", response_class=HTMLResponse)
def campaign_page(request: Request, staff: Staff, slug: str, contact: str = "") -> HTMLResponse:
    return _campaign_page(request, staff, slug, contact=contact.strip())


@router.post("/campaigns/{slug}/enroll")
def enroll(request: Request, staff: Staff, form: CheckedForm, slug: str) -> Response:
    raw_ids = forms.text(form, "contact_ids").replace(",", " ").split()
    tag = forms.text(form, "tag")
    errors = forms.FormErrors()
    if not raw_ids and not tag:
        errors.add("contact_ids", "Enter patient numbers, or a tag")
    if any(not r.isdigit() for r in raw_ids):
        errors.add("contact_ids", "Patient numbers are digits, separated by spaces or commas")
    if errors:
        return _campaign_page(request, staff, slug, errors=errors, typed=forms.values(form), status_code=400)
    now = now_of(request)
    try:
        with transaction(get_session_factory(request)) as session:
            ids = [int(r) for r in raw_ids]
            if tag:
                ids += eligibility.contact_ids_for_tag(session, tag)
            report = enroll_contacts(session, get_settings(request), slug, ids, now=now)
            audit.record(
                session,
                staff.actor,
                "campaign.enroll",
                now,
                subject_type="campaign",
                subject_id=slug,
                detail={"enrolled": len(report.enrolled), "refused": len(report.refused), "tag": tag or None},
            )
    except OutreachError as exc:
        errors.add("contact_ids", str(exc))
        return _campaign_page(request, staff, slug, errors=errors, typed=forms.values(form), status_code=400)
    return _campaign_page(request, staff, slug, report=report)


@router.get("/appointments", response_class=HTMLResponse)
def appointments(request: Request, staff: Staff, day: str = "", view: str = "day") -> HTMLResponse:
    zone = get_settings(request).clinic_zone
    today = now_of(request).astimezone(zone).date()
    errors = forms.FormErrors()
    try:
        first = date.fromisoformat(day) if day else today
    except ValueError:
        errors.add("day", "Enter a date as year-month-day, for example 2026-06-10")
        first = today
    week = view == "week"
    if week:
        first -= timedelta(days=first.weekday())
    days = [first + timedelta(days=n) for n in range(7 if week else 1)]
    with transaction(get_session_factory(request)) as session:
        columns = [(long_date(d), [visit_row(v, zone) for v in day_view(session, d, zone)]) for d in days]
    step = timedelta(days=7 if week else 1)
    context = {
        "title": "Appointments",
        "columns": columns,
        "view": "week" if week else "day",
        "day": first.isoformat(),
        "previous": (first - step).isoformat(),
        "next": (first + step).isoformat(),
        "errors": errors,
        "now_text": staff_time(now_of(request), zone),
    }
    return render(request, "appointments.html", context, staff=staff)
