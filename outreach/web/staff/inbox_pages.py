"""The inbox: conversations (urgent first), one thread, reply, assign, handle, clear a crisis pause.

The on-call crisis alert links to ``/inbox/{id}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from outreach import audit
from outreach.db import transaction
from outreach.delivery.conversation import conversational_window_open, last_inbound_at
from outreach.errors import OutreachError
from outreach.replies import inbox
from outreach.timefmt import staff_time
from outreach.web.deps import get_session_factory, get_settings
from outreach.web.staff import forms
from outreach.web.staff.rendering import render
from outreach.web.staff.security import CheckedForm, Staff, now_of

router = APIRouter()

STATE_WORDS = {"unread": "new", "read": "read, not handled", "handled": "handled"}


def item_row(item: inbox.ItemSummary, request: Request) -> dict[str, Any]:
    zone = get_settings(request).clinic_zone
    who = item.contact_name or (
        f"shared phone ({len(item.candidates)} possible patients)" if item.candidates else "unknown sender"
    )
    return {
        "id": item.id,
        "urgent": item.urgent,
        "who": who,
        "contact_id": item.contact_id,
        "text": item.text,
        "received": staff_time(item.created_at, zone),
        "state": STATE_WORDS.get(item.state, item.state),
        "assigned_to": item.assigned_to or "nobody",
        "kind": item.kind,
    }


@router.get("/inbox", response_class=HTMLResponse)
def inbox_list(request: Request, staff: Staff, state: str = "open") -> HTMLResponse:
    chosen = state if state in ("open", "unread", "read", "handled", "all") else "open"
    with transaction(get_session_factory(request)) as session:
        items = inbox.list_items(session, state=chosen)  # type: ignore[arg-type]
    rows = [item_row(item, request) for item in items]
    return render(request, "inbox.html", {"title": "Inbox", "rows": rows, "state": chosen}, staff=staff)


def _detail_page(
    request: Request,
    staff: Staff,
    item_id: int,
    *,
    errors: forms.FormErrors | None = None,
    typed: dict[str, str] | None = None,
    flash: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    settings = get_settings(request)
    zone = settings.clinic_zone
    now = now_of(request)
    with transaction(get_session_factory(request)) as session:
        detail = inbox.show_item(session, item_id)
        audit.record(session, staff.actor, "inbox.view", now, subject_type="inbox_item", subject_id=item_id)
        last_in = last_inbound_at(session, detail.phone) if detail.phone else None
    window_open = conversational_window_open(last_in, now, settings.conversational_window_hours)
    if detail.sms_opted_out:
        reply_note = "This patient has opted out of text messages. Phone them instead."
    elif window_open:
        reply_note = "The patient wrote recently, so a reply goes out now, at any hour."
    else:
        start = settings.send_window_start.strftime("%H:%M")
        end = settings.send_window_end.strftime("%H:%M")
        reply_note = (
            f"The patient last wrote more than {settings.conversational_window_hours:g} hours ago, so a "
            f"reply waits for the sending window ({start} to {end} in the patient's time)."
        )
    thread = [
        {"direction": e.direction, "at": staff_time(e.at, zone), "text": e.text, "detail": e.detail}
        for e in detail.conversation
    ]
    context = {
        "title": f"Inbox item {item_id}",
        "item": item_row(detail.item, request),
        "thread": thread,
        "paused_since": staff_time(detail.automation_paused_at, zone),
        "reply_note": reply_note,
        "can_reply": not detail.sms_opted_out,
        "candidates": detail.item.candidates,
        "errors": errors or forms.FormErrors(),
        "typed": typed or {},
        "flash": flash,
        "handled": detail.item.state == "handled",
        "handled_note": (
            f"Handled by {detail.item.handled_by} on {staff_time(detail.item.handled_at, zone)}"
            if detail.item.handled_at
            else ""
        ),
    }
    return render(request, "inbox_item.html", context, staff=staff, status_code=status_code)


@router.get("/inbox/{item_id}", response_class=HTMLResponse)
def inbox_item(request: Request, staff: Staff, item_id: int, done: str = "") -> HTMLResponse:
    return _detail_page(request, staff, item_id, flash=DONE_WORDS.get(done, ""))


DONE_WORDS = {
    "replied": "Your reply is queued.",
    "replied-later": "Your reply is queued and will go out in the patient's sending window.",
    "assigned": "Assigned.",
    "handled": "Marked as handled.",
    "cleared": "Automated messages to this patient are no longer paused.",
    "not-paused": "Automated messages to this patient were not paused.",
}


def _back(item_id: int, done: str) -> Response:
    return RedirectResponse(f"/inbox/{item_id}?done={done}", status_code=303)


@router.post("/inbox/{item_id}/reply")
def reply(request: Request, staff: Staff, form: CheckedForm, item_id: int) -> Response:
    text = forms.text(form, "reply")
    contact = forms.text(form, "contact_id")
    now = now_of(request)
    errors = forms.FormErrors()
    try:
        with transaction(get_session_factory(request)) as session:
            queued = inbox.reply(
                session,
                get_settings(request),
                item_id,
                text,
                staff.email,
                now,
                contact_id=int(contact) if contact.isdigit() else None,
            )
            audit.record(
                session,
                staff.actor,
                "inbox.reply",
                now,
                subject_type="inbox_item",
                subject_id=item_id,
                detail={"message_id": queued.message_id},
            )
    except OutreachError as exc:
        errors.add("reply", str(exc)[0].upper() + str(exc)[1:])
        return _detail_page(request, staff, item_id, errors=errors, typed=forms.values(form), status_code=400)
    return _back(item_id, "replied" if queued.goes_out_any_hour else "replied-later")


@router.post("/inbox/{item_id}/assign")
def assign(request: Request, staff: Staff, form: CheckedForm, item_id: int) -> Response:
    name = forms.text(form, "assignee") or staff.email
    now = now_of(request)
    with transaction(get_session_factory(request)) as session:
        inbox.assign(session, item_id, name)
        audit.record(session, staff.actor, "inbox.assign", now, subject_type="inbox_item", subject_id=item_id)
    return _back(item_id, "assigned")


@router.post("/inbox/{item_id}/handled")
def handled(request: Request, staff: Staff, _form: CheckedForm, item_id: int) -> Response:
    now = now_of(request)
    with transaction(get_session_factory(request)) as session:
        inbox.mark_handled(session, item_id, staff.email, now)
        audit.record(
            session, staff.actor, "inbox.handled", now, subject_type="inbox_item", subject_id=item_id
        )
    return _back(item_id, "handled")


@router.post("/inbox/{item_id}/clear-pause")
def clear_pause(request: Request, staff: Staff, form: CheckedForm, item_id: int) -> Response:
    reason = forms.text(form, "reason")
    now = now_of(request)
    if not reason:
        errors = forms.FormErrors()
        errors.add("reason", "Say why automated messages may resume (for example, who spoke to the patient)")
        return _detail_page(request, staff, item_id, errors=errors, typed=forms.values(form), status_code=400)
    with transaction(get_session_factory(request)) as session:
        detail = inbox.show_item(session, item_id, mark_read=False)
        contact_id = detail.item.contact_id
        cleared = contact_id is not None and inbox.clear_crisis_pause(session, contact_id, staff.email, now)
        audit.record(
            session,
            staff.actor,
            "contact.clear_crisis_pause",
            now,
            subject_type="contact",
            subject_id=contact_id,
            detail={"inbox_item_id": item_id, "reason": reason, "cleared": cleared},
        )
    return _back(item_id, "cleared" if cleared else "not-paused")
