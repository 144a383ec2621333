"""Who is asking: the session cookie, CSRF tokens, roles, and the headers every page carries.

Handlers take ``Staff`` (or ``Admin``) as a dependency; a request without a live session never
reaches them. POST handlers also take ``checked_form``, which refuses a form without the
session's CSRF token with 403 before anything changes.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, cast
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response
from starlette.datastructures import FormData, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outreach import audit
from outreach.accounts import sessions
from outreach.db import transaction
from outreach.models import Role
from outreach.web.deps import get_session_factory, get_settings

SESSION_COOKIE = "outreach_session"
# Before sign-in there is no session to hold the CSRF token: the login form's token is also
# set as a cookie and the two must match (double submit).
LOGIN_CSRF_COOKIE = "outreach_login_csrf"
CSRF_FIELD = "csrf_token"

# No inline script or style: everything comes from /static on this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


class NotSignedIn(Exception):
    """Raised by the session dependency; the app turns it into a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


@dataclass(frozen=True)
class StaffUser:
    id: int
    email: str
    role: str
    csrf_token: str
    address: str

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(audit.ActorKind.USER, self.email, self.address)


def now_of(request: Request) -> datetime:
    clock = cast(Callable[[], datetime], request.app.state.clock)
    return clock()


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def cookie_secure(request: Request) -> bool:
    return get_settings(request).public_base_url.startswith("https://")


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="lax", secure=cookie_secure(request), path="/"
    )


def current_staff(request: Request) -> StaffUser:
    token = request.cookies.get(SESSION_COOKIE)
    next_path = request.url.path
    if not token:
        raise NotSignedIn(next_path)
    settings = get_settings(request)
    idle = timedelta(minutes=settings.session_idle_minutes)
    with transaction(get_session_factory(request)) as session:
        signed_in = sessions.resume(session, token, now_of(request), idle)
        if signed_in is None:
            raise NotSignedIn(next_path)
        user = signed_in.user
        return StaffUser(
            id=user.id,
            email=user.email,
            role=user.role,
            csrf_token=signed_in.web_session.csrf_token,
            address=client_address(request),
        )


def current_admin(staff: Annotated[StaffUser, Depends(current_staff)]) -> StaffUser:
    if not staff.is_admin:
        raise HTTPException(status_code=403, detail="This page is for administrators only.")
    return staff


Staff = Annotated[StaffUser, Depends(current_staff)]
Admin = Annotated[StaffUser, Depends(current_admin)]


def tokens_match(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


async def checked_form(request: Request, staff: Staff) -> FormData:
    """The posted form, once its CSRF token matched this session's."""
    form = await request.form()
    given = form.get(CSRF_FIELD)
    if not tokens_match(given if isinstance(given, str) else None, staff.csrf_token):
        raise HTTPException(
            status_code=403, detail="The form was missing its security token. Reload the page and try again."
        )
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def login_redirect(next_path: str) -> str:
    return f"/login?next={quote(next_path, safe='/')}"


def safe_next(next_path: str | None) -> str:
    """Only paths on this site: an open redirect would let a link send staff elsewhere."""
    if not next_path or not next_path.startswith("/") or next_path.startswith("//"):
        return "/"
    return next_path


class SecurityHeaders:
    """ASGI middleware: the browser-facing security headers on every response.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs
    each request through a task group and memory streams, which cost a webhook more CPU than
    its own work (measured with py-spy on ``bench/webhook_bench.py``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The public unsubscribe pages style themselves inline; they hold no staff data.
        styled_inline = scope.get("path", "").startswith("/unsubscribe/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if not styled_inline:
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("X-Frame-Options", "DENY")
                if headers.get("content-type", "").startswith("text/html"):
                    # Patient pages must not sit in a shared computer's cache after sign-out.
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)
