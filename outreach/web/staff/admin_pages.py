"""Administrators only: the configuration (secrets masked, webhook URLs to paste into Twilio)
and the audit trail (filter, CSV export)."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import SecretStr

from outreach import audit
from outreach.channels.twilio.client import STATUS_CALLBACK_PATH
from outreach.config import Settings
from outreach.content.rendering import RenderError, clinic_context, render_template
from outreach.db import transaction
from outreach.replies.responses import HELP_TEMPLATE
from outreach.timefmt import staff_time
from outreach.web.deps import get_session_factory, get_settings
from outreach.web.inbound import INBOUND_SMS_PATH
from outreach.web.staff import forms
from outreach.web.staff.rendering import render
from outreach.web.staff.security import Admin, now_of

router = APIRouter()

PAGE_SIZE = 200


def _masked(value: object) -> str:
    if isinstance(value, SecretStr):
        return "set (hidden)" if value.get_secret_value() else "not set"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def _help_reply(settings: Settings) -> str:
    """What a patient texting HELP must read (clinic, phone, STOP, 911/988): when Twilio answers
    HELP, its default answer has none of it until the clinic pastes this in."""
    try:
        return render_template(settings, HELP_TEMPLATE, "sms", clinic_context(settings)).text
    except RenderError as exc:
        return f"(it does not render: {exc})"


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, staff: Admin) -> HTMLResponse:
    settings = get_settings(request)
    base = settings.public_base_url.rstrip("/")
    rows = [(name, _masked(getattr(settings, name))) for name in sorted(type(settings).model_fields)]
    context = {
        "title": "Settings",
        "webhooks": [
            ("A message comes in (Messaging: webhook URL, HTTP POST)", base + INBOUND_SMS_PATH),
            (
                "Delivery status (sent by us with each message; shown for checking)",
                base + STATUS_CALLBACK_PATH,
            ),
        ],
        "rows": rows,
        "help_reply": _help_reply(settings),
        "twilio_answers_help": settings.twilio_handles_opt_out,
    }
    with transaction(get_session_factory(request)) as session:
        audit.record(session, staff.actor, "settings.view", now_of(request))
    return render(request, "settings.html", context, staff=staff)


@dataclass(frozen=True)
class AuditQuery:
    """The filters as typed in the query string, shared by the audit page and its CSV download."""

    actor: str = ""
    action: str = ""
    subject: str = ""
    day_from: str = ""
    day_to: str = ""

    def where(self, zone: ZoneInfo, errors: forms.FormErrors) -> audit.AuditFilter:
        since, until = forms.day_range(zone, self.day_from, self.day_to, errors)
        subject_type, _, subject_id = self.subject.partition(":")
        return audit.AuditFilter(
            actor=self.actor or None,
            action=self.action or None,
            subject_type=subject_type or None,
            subject_id=subject_id or None,
            since=since,
            until=until,
        )


AuditFilters = Annotated[AuditQuery, Depends()]


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request, staff: Admin, query: AuditFilters, before: int | None = None
) -> HTMLResponse:
    zone = get_settings(request).clinic_zone
    errors = forms.FormErrors()
    where = query.where(zone, errors)
    with transaction(get_session_factory(request)) as session:
        found = audit.events(session, where, limit=PAGE_SIZE, before_id=before)
        rows = [
            {
                "at": staff_time(e.at, zone),
                "actor": e.actor,
                "kind": e.actor_kind,
                "action": e.action,
                "subject": f"{e.subject_type} {e.subject_id}" if e.subject_type else "",
                "link": f"/contacts/{e.subject_id}" if e.subject_type == "contact" else None,
                "address": e.address or "",
                "detail": ", ".join(f"{k}: {v}" for k, v in sorted(e.detail.items())),
            }
            for e in found
        ]
        oldest = found[-1].id if len(found) == PAGE_SIZE else None
    typed = asdict(query)
    context = {
        "title": "Audit trail",
        "rows": rows,
        "typed": typed,
        "errors": errors,
        "older": oldest,
        "query": forms.query_of(typed),
    }
    return render(request, "audit.html", context, staff=staff)


@router.get("/audit/export")
def audit_export(request: Request, staff: Admin, query: AuditFilters) -> Response:
    where = query.where(get_settings(request).clinic_zone, forms.FormErrors())
    out = io.StringIO()
    with transaction(get_session_factory(request)) as session:
        count = audit.export_csv(session, where, out)
        audit.record(session, staff.actor, "audit.export", now_of(request), detail={"rows": count})
    return forms.csv_download(out.getvalue(), "audit.csv")
