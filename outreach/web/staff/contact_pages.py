"""Contacts: search and filter, add and edit, the patient's page (timeline, what comes next,
pause and resume, consent by phone). Import and export live in ``contact_files``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from outreach import audit
from outreach.campaigns import lifecycle
from outreach.contacts import consent, timeline
from outreach.contacts.service import (
    ContactInput,
    InvalidContact,
    add_contact,
    change_consent,
    find_contacts,
    get_contact,
    update_contact,
)
from outreach.db import transaction
from outreach.errors import OutreachError
from outreach.models import Category, Channel
from outreach.timefmt import staff_time
from outreach.web.deps import get_session_factory, get_settings
from outreach.web.staff import forms
from outreach.web.staff.formatting import state_words
from outreach.web.staff.rendering import render
from outreach.web.staff.security import CheckedForm, Staff, StaffUser, now_of

router = APIRouter()

PAGE_SIZE = 50
FIELDS = ("first_name", "last_name", "phone", "email", "external_id", "timezone", "tags")
# A field's problem as the contacts service words it -> the form field it belongs to.
PROBLEM_FIELDS = (
    ("phone", "phone"),
    ("email", "email"),
    ("time zone", "timezone"),
    ("first_name", "first_name"),
    ("last_name", "last_name"),
    ("external_id", "external_id"),
    ("tag", "tags"),
)
CONSENT_WORDS = {"granted": "yes", "revoked": "withdrawn", "none": "never asked"}


def _contacts_page(
    request: Request, staff: StaffUser, q: str, tag: str, consent_filter: str, page: int
) -> HTMLResponse:
    page = max(page, 1)
    granted = tuple(consent_filter.split(":", 1)) if ":" in consent_filter else None
    with transaction(get_session_factory(request)) as session:
        found = find_contacts(
            session,
            search=q or None,
            tag=tag or None,
            consent_to=granted,  # type: ignore[arg-type]
            limit=PAGE_SIZE + 1,
            offset=(page - 1) * PAGE_SIZE,
        )
        rows = [
            {
                "id": c.id,
                "name": c.full_name or "(no name)",
                "phone": c.phone or "",
                "email": c.email or "",
                "external_id": c.external_id or "",
                "tags": ", ".join(t.tag for t in c.tags),
                "paused": c.automation_paused_at is not None,
            }
            for c in found[:PAGE_SIZE]
        ]
        audit.record(
            session,
            staff.actor,
            "contacts.search",
            now_of(request),
            detail={"results": len(rows), "page": page, "text_search": bool(q)},
        )
    consent_options = [("", "Any")] + [
        (f"{ch}:{cat}", f"{cat} by {'text' if ch == 'sms' else 'email'}")
        for ch in Channel
        for cat in Category
    ]
    context = {
        "title": "Contacts",
        "rows": rows,
        "q": q,
        "tag": tag,
        "consent_filter": consent_filter,
        "consent_options": consent_options,
        "page": page,
        "more": len(found) > PAGE_SIZE,
    }
    return render(request, "contacts.html", context, staff=staff)


@router.get("/contacts", response_class=HTMLResponse)
def contacts_list(
    request: Request, staff: Staff, tag: str = "", consent_filter: str = "", page: int = 1
) -> HTMLResponse:
    return _contacts_page(request, staff, "", tag, consent_filter, page)


@router.post("/contacts", response_class=HTMLResponse)
def contacts_search(request: Request, staff: Staff, form: CheckedForm) -> HTMLResponse:
    """A search by name, phone, email or record number is posted: those words are patient
    data, and a URL ends up in browser history, proxies and logs."""
    page = forms.text(form, "page")
    return _contacts_page(
        request,
        staff,
        forms.text(form, "q"),
        forms.text(form, "tag"),
        forms.text(form, "consent_filter"),
        int(page) if page.isdigit() else 1,
    )


def _input(form: FormData) -> ContactInput:
    tags = forms.text(form, "tags")
    return ContactInput(
        first_name=forms.text(form, "first_name"),
        last_name=forms.text(form, "last_name"),
        phone=forms.text(form, "phone"),
        email=forms.text(form, "email"),
        timezone=forms.text(form, "timezone"),
        external_id=forms.text(form, "external_id") or None,
        tags=[t for t in tags.replace(",", " ").split() if t],
    )


def _field_errors(exc: InvalidContact) -> forms.FormErrors:
    errors = forms.FormErrors()
    for problem in str(exc).split("; "):
        target = next((f for word, f in PROBLEM_FIELDS if word in problem), "phone")
        errors.add(target, problem[0].upper() + problem[1:])
    return errors


def _form_page(
    request: Request,
    staff: StaffUser,
    *,
    contact_id: int | None,
    typed: dict[str, str],
    errors: forms.FormErrors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    title = "Add a contact" if contact_id is None else "Change contact details"
    context = {
        "title": title,
        "contact_id": contact_id,
        "typed": typed,
        "errors": errors or forms.FormErrors(),
    }
    return render(request, "contact_form.html", context, staff=staff, status_code=status_code)


def _form_refused(
    request: Request, staff: StaffUser, contact_id: int | None, form: FormData, exc: InvalidContact
) -> HTMLResponse:
    """The form again, as typed, with each refused field named."""
    return _form_page(
        request,
        staff,
        contact_id=contact_id,
        typed=forms.values(form),
        errors=_field_errors(exc),
        status_code=400,
    )


@router.get("/contacts/new", response_class=HTMLResponse)
def new_contact(request: Request, staff: Staff) -> HTMLResponse:
    return _form_page(request, staff, contact_id=None, typed={})


@router.post("/contacts/new")
def create_contact(request: Request, staff: Staff, form: CheckedForm) -> Response:
    now = now_of(request)
    try:
        with transaction(get_session_factory(request)) as session:
            contact = add_contact(
                session, _input(form), clinic_timezone=get_settings(request).clinic_timezone, now=now
            )
            audit.record(
                session, staff.actor, "contact.add", now, subject_type="contact", subject_id=contact.id
            )
    except InvalidContact as exc:
        return _form_refused(request, staff, None, form, exc)
    return RedirectResponse(f"/contacts/{contact.id}?done=added", status_code=303)


@router.get("/contacts/{contact_id}/edit", response_class=HTMLResponse)
def edit_contact(request: Request, staff: Staff, contact_id: int) -> HTMLResponse:
    with transaction(get_session_factory(request)) as session:
        contact = get_contact(session, contact_id)
        typed = {name: str(getattr(contact, name) or "") for name in FIELDS if name != "tags"}
        typed["tags"] = " ".join(t.tag for t in contact.tags)
        audit.record(
            session,
            staff.actor,
            "contact.view",
            now_of(request),
            subject_type="contact",
            subject_id=contact_id,
            detail={"page": "edit"},
        )
    return _form_page(request, staff, contact_id=contact_id, typed=typed)


@router.post("/contacts/{contact_id}/edit")
def save_contact(request: Request, staff: Staff, form: CheckedForm, contact_id: int) -> Response:
    now = now_of(request)
    try:
        with transaction(get_session_factory(request)) as session:
            contact = get_contact(session, contact_id)
            update_contact(session, contact, _input(form), now=now)
            audit.record(
                session, staff.actor, "contact.update", now, subject_type="contact", subject_id=contact_id
            )
    except InvalidContact as exc:
        return _form_refused(request, staff, contact_id, form, exc)
    return RedirectResponse(f"/contacts/{contact_id}?done=saved", status_code=303)


DONE_WORDS = {
    "added": "Contact added.",
    "saved": "Changes saved.",
    "consent": "Consent recorded.",
    "paused": "Campaign messages paused.",
    "resumed": "Campaign messages resumed.",
}


def _contact_page(
    request: Request,
    staff: StaffUser,
    contact_id: int,
    *,
    flash: str = "",
    errors: forms.FormErrors | None = None,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    zone = get_settings(request).clinic_zone
    with transaction(get_session_factory(request)) as session:
        contact = get_contact(session, contact_id)
        history = timeline.timeline(session, contact)
        consents = consent.summary(session, contact_id)
        audit.record(
            session,
            staff.actor,
            "contact.view",
            now_of(request),
            subject_type="contact",
            subject_id=contact_id,
        )
        patient_zone = contact.timezone
        facts: dict[str, Any] = {
            "id": contact.id,
            "name": contact.full_name or "(no name)",
            "phone": contact.phone or "none",
            "email": contact.email or "none",
            "external_id": contact.external_id or "none",
            "timezone": contact.timezone,
            "tags": ", ".join(t.tag for t in contact.tags) or "none",
            "paused_since": staff_time(contact.automation_paused_at, zone),
            "paused_reason": contact.automation_paused_reason or "",
        }
    entries = [
        {
            "at": staff_time(e.at, zone),
            "kind": e.kind,
            "summary": e.summary,
            "detail": e.detail,
            "link": e.link,
            "also": staff_time(e.also_at, zone, patient_zone) if e.also_at else "",
            "events": [f"{staff_time(at, zone)}: {state_words(status)}" for at, status in e.events],
        }
        for e in history.entries
    ]
    upcoming = [
        {
            "when": staff_time(u.due_at, zone, patient_zone),
            "by": "text message" if u.channel == "sms" else "email",
            "what": u.what,
            "state": state_words(u.state),
            "id": u.message_id,
        }
        for u in history.upcoming
    ]
    consent_rows = [
        (
            ch,
            "Text messages" if ch == "sms" else "Email",
            [(cat, CONSENT_WORDS[state]) for cat, state in by_category.items()],
        )
        for ch, by_category in consents.items()
    ]
    context = {
        "title": facts["name"],
        "contact": facts,
        "entries": entries,
        "upcoming": upcoming,
        "consents": consent_rows,
        "flash": flash,
        "errors": errors or forms.FormErrors(),
        "typed": typed or {},
        "categories": [str(c) for c in Category],
    }
    return render(request, "contact.html", context, staff=staff, status_code=status_code)


@router.get("/contacts/{contact_id}", response_class=HTMLResponse)
def contact_page(request: Request, staff: Staff, contact_id: int, done: str = "") -> HTMLResponse:
    return _contact_page(request, staff, contact_id, flash=DONE_WORDS.get(done, ""))


@router.post("/contacts/{contact_id}/consent")
def record_consent(request: Request, staff: Staff, form: CheckedForm, contact_id: int) -> Response:
    errors = forms.FormErrors()
    change = forms.text(form, "change")
    channel = forms.text(form, "channel")
    categories = [c for c in form.getlist("category") if isinstance(c, str)]
    wording = forms.text(form, "wording")
    if change not in ("grant", "revoke"):
        errors.add("change-grant", "Choose whether consent was given or withdrawn")
    if channel not in ("sms", "email"):
        errors.add("channel", "Choose text messages or email")
    if not categories:
        errors.add("category-care", "Choose at least one kind of message")
    if not wording:
        errors.add("wording", "Write down what the patient said, in their words")
    if not errors:
        now = now_of(request)
        try:
            with transaction(get_session_factory(request)) as session:
                recorded = change_consent(
                    session,
                    contact_id,
                    channel,
                    categories,
                    grant=change == "grant",
                    wording=f"By phone: {wording}",
                    recorded_by=staff.email,
                    now=now,
                )
                audit.record(
                    session,
                    staff.actor,
                    f"consent.{change}",
                    now,
                    subject_type="contact",
                    subject_id=contact_id,
                    detail={"channel": channel, "categories": recorded},
                )
        except OutreachError as exc:
            errors.add("wording", str(exc))
    if errors:
        return _contact_page(
            request, staff, contact_id, errors=errors, typed=forms.values(form), status_code=400
        )
    return RedirectResponse(f"/contacts/{contact_id}?done=consent", status_code=303)


@router.post("/contacts/{contact_id}/pause")
def pause(request: Request, staff: Staff, _form: CheckedForm, contact_id: int) -> Response:
    now = now_of(request)
    with transaction(get_session_factory(request)) as session:
        get_contact(session, contact_id)
        report = lifecycle.pause(session, contact_ids=[contact_id], now=now)
        audit.record(
            session,
            staff.actor,
            "contact.pause",
            now,
            subject_type="contact",
            subject_id=contact_id,
            detail={"enrollments": report.enrollments, "cancelled": report.messages_cancelled},
        )
    return RedirectResponse(f"/contacts/{contact_id}?done=paused", status_code=303)


@router.post("/contacts/{contact_id}/resume")
def resume(request: Request, staff: Staff, _form: CheckedForm, contact_id: int) -> Response:
    now = now_of(request)
    with transaction(get_session_factory(request)) as session:
        get_contact(session, contact_id)
        report = lifecycle.resume(session, get_settings(request), contact_ids=[contact_id], now=now)
        audit.record(
            session,
            staff.actor,
            "contact.resume",
            now,
            subject_type="contact",
            subject_id=contact_id,
            detail={"enrollments": report.enrollments, "created": report.messages_created},
        )
    return RedirectResponse(f"/contacts/{contact_id}?done=resumed", status_code=303)
