"""Signing in and out."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from outreach import audit
from outreach.accounts import sessions
from outreach.db import transaction
from outreach.web.deps import get_session_factory
from outreach.web.staff import forms
from outreach.web.staff.rendering import render
from outreach.web.staff.security import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CheckedForm,
    Staff,
    client_address,
    cookie_secure,
    new_login_csrf,
    now_of,
    safe_next,
    set_session_cookie,
    tokens_match,
)

router = APIRouter()


def _login_page(
    request: Request,
    *,
    next_path: str,
    email: str = "",
    error: str = "",
    notice: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    token = new_login_csrf()
    errors = forms.FormErrors()
    if error:
        errors.add("email", error)
    response = render(
        request,
        "login.html",
        {
            "csrf_token": token,
            "next": next_path,
            "email": email,
            "errors": errors,
            "notice": notice,
            "title": "Sign in",
        },
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request),
        path="/login",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/", ended: str = "") -> HTMLResponse:
    notice = "You were signed out after a period of inactivity. Please sign in again." if ended else ""
    return _login_page(request, next_path=safe_next(next), notice=notice)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    given = form.get(CSRF_FIELD)
    if not tokens_match(given if isinstance(given, str) else None, request.cookies.get(LOGIN_CSRF_COOKIE)):
        raise HTTPException(
            status_code=403, detail="The form was missing its security token. Reload the page and try again."
        )
    email = forms.text(form, "email")
    password = form.get("password")
    next_path = safe_next(forms.text(form, "next"))
    now = now_of(request)
    address = client_address(request)
    if not email or not isinstance(password, str) or not password:
        return _login_page(
            request,
            next_path=next_path,
            email=email,
            status_code=400,
            error="Enter your email address and password",
        )
    # In the thread pool: checking an argon2 hash takes tens of milliseconds of CPU, which on
    # the event loop would hold up every other request of this process, webhooks included.
    outcome = await run_in_threadpool(
        _sign_in, get_session_factory(request), email, password, address, now
    )
    if isinstance(outcome, sessions.Refused):
        message = outcome.reason[0].upper() + outcome.reason[1:]
        return _login_page(request, next_path=next_path, email=email, error=message, status_code=401)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(request, response, outcome.token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _sign_in(
    factory: sessionmaker[Session], email: str, password: str, address: str, now: datetime
) -> sessions.SignedIn | sessions.Refused:
    with transaction(factory) as session:
        outcome = sessions.sign_in(session, email, password, address, now)
        if isinstance(outcome, sessions.SignedIn):
            actor = audit.Actor(audit.ActorKind.USER, outcome.user.email, address)
            audit.record(session, actor, "session.sign_in", now)
    return outcome


@router.post("/logout")
def logout(request: Request, staff: Staff, _form: CheckedForm) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    now = now_of(request)
    with transaction(get_session_factory(request)) as session:
        sessions.sign_out(session, token, now)
        audit.record(session, staff.actor, "session.sign_out", now)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
