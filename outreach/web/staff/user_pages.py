"""Administrators only: staff logins (add, disable, enable, set a new password) and loading the
campaign files, the web twins of ``outreach users`` and ``outreach campaigns sync``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from outreach import audit
from outreach.accounts import users
from outreach.campaigns import sync as campaign_sync
from outreach.db import transaction
from outreach.errors import NotFound, OutreachError
from outreach.models import Role, User
from outreach.timefmt import long_date
from outreach.web.deps import get_session_factory, get_settings
from outreach.web.staff import forms
from outreach.web.staff.rendering import render
from outreach.web.staff.schedule_pages import campaigns_page
from outreach.web.staff.security import Admin, CheckedForm, now_of

router = APIRouter()

DONE_WORDS = {
    "added": "Login added. Give its password to its owner in person or by phone, never by email.",
    "disabled": "Login disabled; its open sessions were signed out.",
    "enabled": "Login enabled.",
    "password": "New password set; every browser signed in with the old one was signed out.",
}


def _passwords(form: CheckedForm, errors: forms.FormErrors) -> str:
    # Not stripped: spaces may be part of a password.
    password = form.get("password")
    again = form.get("password_again")
    password = password if isinstance(password, str) else ""
    if len(password) < users.MIN_PASSWORD_LENGTH:
        errors.add("password", f"Choose a password of at least {users.MIN_PASSWORD_LENGTH} characters")
    elif password != again:
        errors.add("password_again", "The two passwords are not the same")
    return password


def _users_page(
    request: Request,
    staff: Admin,
    *,
    typed: dict[str, str] | None = None,
    errors: forms.FormErrors | None = None,
    flash: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    zone = get_settings(request).clinic_zone
    with transaction(get_session_factory(request)) as session:
        rows = [
            {
                "id": user.id,
                "email": user.email,
                "role": "administrator" if user.role == Role.ADMIN else "staff",
                "active": not user.disabled,
                "since": long_date(user.created_at.astimezone(zone).date()),
                "is_me": user.id == staff.id,
            }
            for user in users.list_users(session)
        ]
    context = {
        "title": "Staff logins",
        "users": rows,
        "typed": typed or {"role": "staff"},
        "errors": errors or forms.FormErrors(),
        "flash": flash,
        "min_length": users.MIN_PASSWORD_LENGTH,
    }
    return render(request, "users.html", context, staff=staff, status_code=status_code)


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, staff: Admin, done: str = "") -> HTMLResponse:
    return _users_page(request, staff, flash=DONE_WORDS.get(done, ""))


@router.post("/users", response_class=HTMLResponse)
def add_login(request: Request, staff: Admin, form: CheckedForm) -> Response:
    errors = forms.FormErrors()
    email = forms.text(form, "email")
    role = forms.text(form, "role")
    if "@" not in email:
        errors.add("email", "Enter the person's email address: it is their login")
    if role not in (Role.ADMIN, Role.STAFF):
        errors.add("role", "Choose staff or administrator")
    password = _passwords(form, errors)
    typed = {"email": email, "role": role}  # never the passwords
    if errors:
        return _users_page(request, staff, typed=typed, errors=errors, status_code=400)
    try:
        with transaction(get_session_factory(request)) as session:
            user = users.add_user(session, email, role, password, now_of(request))
            audit.record(
                session,
                staff.actor,
                "user.add",
                now_of(request),
                subject_type="user",
                subject_id=user.id,
                detail={"role": role},
            )
    except users.AccountError as exc:
        errors.add("email", str(exc)[:1].upper() + str(exc)[1:])
        return _users_page(request, staff, typed=typed, errors=errors, status_code=400)
    return RedirectResponse("/users?done=added", status_code=303)


def _user(request: Request, user_id: int) -> User:
    with transaction(get_session_factory(request)) as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound(f"no login with id {user_id}")
        return user


@router.post("/users/{user_id}/disable")
def disable_login(request: Request, staff: Admin, form: CheckedForm, user_id: int) -> Response:
    if user_id == staff.id:
        errors = forms.FormErrors()
        errors.add("email", "You cannot disable the login you are using: ask another administrator")
        return _users_page(request, staff, errors=errors, status_code=400)
    return _switch(request, staff, user_id, disable=True)


@router.post("/users/{user_id}/enable")
def enable_login(request: Request, staff: Admin, form: CheckedForm, user_id: int) -> Response:
    return _switch(request, staff, user_id, disable=False)


def _switch(request: Request, staff: Admin, user_id: int, *, disable: bool) -> Response:
    email = _user(request, user_id).email
    now = now_of(request)
    with transaction(get_session_factory(request)) as session:
        if disable:
            users.disable_user(session, email, now)
        else:
            users.enable_user(session, email)
        action = "user.disable" if disable else "user.enable"
        audit.record(session, staff.actor, action, now, subject_type="user", subject_id=user_id)
    return RedirectResponse(f"/users?done={'disabled' if disable else 'enabled'}", status_code=303)


def _password_page(
    request: Request, staff: Admin, user: User, errors: forms.FormErrors | None = None, status_code: int = 200
) -> HTMLResponse:
    context = {
        "title": f"New password for {user.email}",
        "user_id": user.id,
        "errors": errors or forms.FormErrors(),
        "min_length": users.MIN_PASSWORD_LENGTH,
    }
    return render(request, "user_password.html", context, staff=staff, status_code=status_code)


@router.get("/users/{user_id}/password", response_class=HTMLResponse)
def password_form(request: Request, staff: Admin, user_id: int) -> HTMLResponse:
    return _password_page(request, staff, _user(request, user_id))


@router.post("/users/{user_id}/password", response_class=HTMLResponse)
def set_password(request: Request, staff: Admin, form: CheckedForm, user_id: int) -> Response:
    user = _user(request, user_id)
    errors = forms.FormErrors()
    password = _passwords(form, errors)
    if errors:
        return _password_page(request, staff, user, errors, status_code=400)
    now = now_of(request)
    with transaction(get_session_factory(request)) as session:
        users.set_password(session, user.email, password, now)
        reset = "user.reset_password"
        audit.record(session, staff.actor, reset, now, subject_type="user", subject_id=user_id)
    if user_id == staff.id:
        return RedirectResponse("/login", status_code=303)  # this browser was signed out too
    return RedirectResponse("/users?done=password", status_code=303)


@router.post("/campaigns/sync", response_class=HTMLResponse)
def sync_campaigns(request: Request, staff: Admin, form: CheckedForm) -> Response:
    """Load the campaign files and the closure calendar, as ``outreach campaigns sync`` does."""
    try:
        with transaction(get_session_factory(request)) as session:
            report = campaign_sync.sync(session, get_settings(request), now_of(request))
            audit.record(
                session,
                staff.actor,
                "campaigns.sync",
                now_of(request),
                detail={c.slug: c.action for c in report.campaigns},
            )
    except OutreachError as exc:
        # A campaign file's problem, named with its file and step; nothing was changed.
        errors = forms.FormErrors()
        errors.add("sync", f"Nothing was loaded: {exc}")
        return campaigns_page(request, staff, errors=errors, status_code=400)
    changed = [c for c in report.campaigns if c.action != "unchanged"]
    return RedirectResponse(f"/campaigns?synced={len(changed)}", status_code=303)
