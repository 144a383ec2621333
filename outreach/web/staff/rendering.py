"""Jinja2 pages with what every page needs: the signed-in person, the CSRF token, navigation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from outreach.config import TWILIO_API, Settings
from outreach.web.deps import get_settings
from outreach.web.staff.security import CSRF_FIELD, StaffUser

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

NAV_STAFF = (
    ("/", "Dashboard"),
    ("/inbox", "Inbox"),
    ("/contacts", "Contacts"),
    ("/campaigns", "Campaigns"),
    ("/appointments", "Appointments"),
    ("/messages", "Messages"),
)
NAV_ADMIN = (("/users", "Logins"), ("/settings", "Settings"), ("/audit", "Audit trail"))


def sandbox_links(settings: Settings) -> list[tuple[str, str]]:
    """In sandbox mode the header links the fake phones and mail inbox (for training)."""
    if settings.twilio_api_base_url.startswith(TWILIO_API):
        return []
    base = f"http://127.0.0.1:{settings.sandbox_http_port}"
    return [(f"{base}/", "Sandbox phones"), (f"{base}/mail", "Sandbox mail")]


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    staff: StaffUser | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = get_settings(request)
    nav = [*NAV_STAFF, *(NAV_ADMIN if staff and staff.is_admin else ())]
    common = {
        "request_path": request.url.path,
        "staff": staff,
        "csrf_field": CSRF_FIELD,
        # Signed in: the session's token. The login page passes its own in ``context``.
        "csrf_token": staff.csrf_token if staff else "",
        "nav": nav if staff else [],
        "clinic_name": settings.clinic_display_name,
        "sandbox_links": sandbox_links(settings) if staff else [],
    }
    page = environment.get_template(name).render({**common, **context})
    return HTMLResponse(page, status_code=status_code)
