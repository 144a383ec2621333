"""Email unsubscribe pages: GET shows, POST acts (RFC 8058 one-click included).

GET must change nothing: mail scanners and link previews fetch every URL in a message. POST
needs no cookie, login or redirect, as RFC 8058 requires of one-click receivers; a POST whose
body is ``List-Unsubscribe=One-Click`` comes from the mailbox provider, anything else from the
button on our page. A bad or tampered token gets a 400 page that says so.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from outreach.config import Settings
from outreach.contacts.unsubscribe import BadUnsubscribeToken, UnsubscribeResult, read_token, unsubscribe
from outreach.db import transaction
from outreach.web.deps import get_clock, get_session_factory, get_settings

router = APIRouter()

CATEGORY_LABELS = {
    "education": "educational emails",
    "marketing": "news and offers by email",
    "care": "care emails",
}


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    settings = get_settings(request)
    try:
        target = read_token(settings, token)
    except BadUnsubscribeToken as exc:
        return _bad_link(settings, exc)
    label = CATEGORY_LABELS.get(target.category, f"{target.category} emails")
    body = (
        f"<h1>Unsubscribe from {escape(label)}?</h1>"
        f"<p>You will stop receiving {escape(label)} from {escape(settings.clinic_display_name)}. "
        "Messages about your own appointments are not affected.</p>"
        '<form method="post"><input type="hidden" name="confirm" value="yes">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page(settings, "Unsubscribe", body)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_action(token: str, request: Request) -> HTMLResponse:
    settings = get_settings(request)
    try:
        form = await request.form()
        one_click = form.get("List-Unsubscribe") == "One-Click"
    except Exception:  # a malformed body: the signed token is what matters
        one_click = False
    how = "one-click unsubscribe (RFC 8058)" if one_click else "unsubscribe page"
    try:
        result = await run_in_threadpool(
            _unsubscribe, get_session_factory(request), settings, token, how, get_clock(request)()
        )
    except BadUnsubscribeToken as exc:
        return _bad_link(settings, exc)
    label = CATEGORY_LABELS.get(result.category, f"{result.category} emails")
    body = (
        "<h1>You are unsubscribed</h1>"
        f"<p>You will no longer receive {escape(label)} from {escape(settings.clinic_display_name)}. "
        f"To change this, call us at {escape(settings.clinic_phone)}.</p>"
    )
    return _page(settings, "Unsubscribed", body)


def _unsubscribe(
    factory: sessionmaker[Session], settings: Settings, token: str, how: str, now: datetime
) -> UnsubscribeResult:
    with transaction(factory) as session:
        return unsubscribe(session, settings, token, now, how=how)


def _bad_link(settings: Settings, exc: BadUnsubscribeToken) -> HTMLResponse:
    body = (
        "<h1>This unsubscribe link does not work</h1>"
        f"<p>{escape(str(exc))}. Please use the link from the email exactly as it was sent, "
        f"or call us at {escape(settings.clinic_phone)} and we will unsubscribe you.</p>"
    )
    return _page(settings, "Link not valid", body, status_code=400)


def _page(settings: Settings, title: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)} - {escape(settings.clinic_display_name)}</title></head>"
        f'<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto">{body}</body></html>'
    )
    return HTMLResponse(html, status_code=status_code)
