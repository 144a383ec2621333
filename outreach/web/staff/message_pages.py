"""Messages: the outbox filtered by state, channel, campaign and date; one message's attempts
and provider events; CSV export of what the filters show."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from outreach import audit
from outreach.db import transaction
from outreach.delivery.views import export_messages_csv, list_messages, message_detail
from outreach.models import MessageState
from outreach.timefmt import staff_time
from outreach.web.deps import get_session_factory, get_settings
from outreach.web.staff import forms
from outreach.web.staff.formatting import state_words
from outreach.web.staff.rendering import render
from outreach.web.staff.security import Staff, now_of

router = APIRouter()

PAGE_SIZE = 100
EXPORT_LIMIT = 100_000


def _filters(
    zone: ZoneInfo,
    state: str,
    channel: str,
    campaign: str,
    day_from: str,
    day_to: str,
    contact: str,
    errors: forms.FormErrors,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "state": state if state in {str(s) for s in MessageState} else None,
        "channel": channel if channel in ("sms", "email") else None,
        "campaign": campaign or None,
        "contact_id": int(contact) if contact.isdigit() else None,
    }
    found["due_from"], found["due_until"] = forms.day_range(zone, day_from, day_to, errors)
    return found


def _row(row: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    return {
        "id": row["id"],
        "contact_id": row["contact_id"],
        "channel": "text" if row["channel"] == "sms" else "email",
        "what": row["template"] or row["kind"],
        "due": staff_time(datetime.fromisoformat(row["due_at"]), zone),
        "state": state_words(row["state"], row["state_reason"]),
        "attempts": row["attempts"],
    }


@dataclass(frozen=True)
class MessageQuery:
    """The filters as typed in the query string, shared by the list and its CSV download."""

    state: str = ""
    channel: str = ""
    campaign: str = ""
    day_from: str = ""
    day_to: str = ""
    contact: str = ""

    def where(self, zone: ZoneInfo, errors: forms.FormErrors) -> dict[str, Any]:
        return _filters(
            zone, self.state, self.channel, self.campaign, self.day_from, self.day_to, self.contact, errors
        )


Filters = Annotated[MessageQuery, Depends()]


@router.get("/messages", response_class=HTMLResponse)
def messages_list(request: Request, staff: Staff, query: Filters, page: int = 1) -> HTMLResponse:
    zone = get_settings(request).clinic_zone
    errors = forms.FormErrors()
    where = query.where(zone, errors)
    page = max(page, 1)
    with transaction(get_session_factory(request)) as session:
        rows = list_messages(
            session, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE, order="newest", **where
        )
    typed = asdict(query)
    context = {
        "title": "Messages",
        "rows": [_row(r, zone) for r in rows[:PAGE_SIZE]],
        "typed": typed,
        "states": [str(s) for s in MessageState],
        "errors": errors,
        "page": page,
        "more": len(rows) > PAGE_SIZE,
        "query": forms.query_of(typed),
    }
    return render(request, "messages.html", context, staff=staff)


@router.get("/messages/export")
def messages_export(request: Request, staff: Staff, query: Filters) -> Response:
    where = query.where(get_settings(request).clinic_zone, forms.FormErrors())
    out = io.StringIO()
    with transaction(get_session_factory(request)) as session:
        count = export_messages_csv(out, list_messages(session, limit=EXPORT_LIMIT, **where))
        audit.record(session, staff.actor, "messages.export", now_of(request), detail={"rows": count})
    return forms.csv_download(out.getvalue(), "messages.csv")


@router.get("/messages/{message_id}", response_class=HTMLResponse)
def message_page(request: Request, staff: Staff, message_id: int) -> HTMLResponse:
    zone = get_settings(request).clinic_zone
    with transaction(get_session_factory(request)) as session:
        detail = message_detail(session, message_id)
        audit.record(
            session,
            staff.actor,
            "message.view",
            now_of(request),
            subject_type="message",
            subject_id=message_id,
        )

    def at(value: str | None) -> str:
        return staff_time(datetime.fromisoformat(value), zone) if value else ""

    context = {
        "title": f"Message {message_id}",
        "message": {
            "id": detail["id"],
            "contact_id": detail["contact_id"],
            "channel": "text message" if detail["channel"] == "sms" else "email",
            "category": detail["category"],
            "what": detail["template"] or detail["kind"],
            "due": at(detail["due_at"]),
            "sent": at(detail["sent_at"]),
            "state": state_words(detail["state"], detail["state_reason"]),
            "provider_id": detail["provider_id"] or "none yet",
            "segments": detail["segments"],
            "key": detail["idempotency_key"],
        },
        "attempts": [
            {
                "number": a["number"],
                "started": at(a["started_at"]),
                "outcome": a["outcome"] or "in progress",
                "error": " ".join(filter(None, [a["error_code"], a["detail"]])),
            }
            for a in detail["attempts_log"]
        ],
        "events": [
            {"at": at(e["received_at"]), "status": state_words(e["status"]), "error": e["error_code"] or ""}
            for e in detail["events"]
        ],
    }
    return render(request, "message.html", context, staff=staff)
