"""Signing in and out: throttled password checks and database-backed sessions.

A session ends when its owner signs out, is disabled or gets a new password, or after
``idle`` without a request. The browser's cookie holds only a random token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach.accounts.digest import secret_digest
from outreach.accounts.users import normalise_email, verify_password
from outreach.models import LoginFailure, User, WebSession

# Failed sign-ins tolerated within THROTTLE_WINDOW: per account (guessing one password),
# and per address (trying many accounts from one machine).
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20


@dataclass(frozen=True)
class Refused:
    """A sign-in that failed; ``reason`` is fit to show on the login page."""

    reason: str


@dataclass(frozen=True)
class SignedIn:
    user: User
    web_session: WebSession
    # The cookie value; only its hash is stored.
    token: str


def _recent_failures(session: Session, now: datetime, **match: str) -> int:
    query = select(func.count(LoginFailure.id)).where(LoginFailure.at > now - THROTTLE_WINDOW)
    for column, value in match.items():
        query = query.where(getattr(LoginFailure, column) == value)
    return int(session.scalar(query) or 0)


def throttled(session: Session, email: str, address: str, now: datetime) -> bool:
    return (
        _recent_failures(session, now, email=email) >= MAX_FAILURES_PER_ACCOUNT
        or _recent_failures(session, now, address=address) >= MAX_FAILURES_PER_ADDRESS
    )


def sign_in(session: Session, email: str, password: str, address: str, now: datetime) -> SignedIn | Refused:
    """Check the password and open a session, or say why not.

    A refusal is returned, not raised, because its failure record must be committed: it is
    what throttling counts.
    """
    email = normalise_email(email)
    if throttled(session, email, address, now):
        minutes = int(THROTTLE_WINDOW.total_seconds() // 60)
        return Refused(f"too many failed sign-ins: wait {minutes} minutes and try again")
    user = session.scalar(select(User).where(User.email == email))
    if not verify_password(user, password) or user is None or user.disabled:
        session.add(LoginFailure(at=now, email=email, address=address))
        session.flush()
        return Refused("the email address or password is not right")
    token = secrets.token_urlsafe(32)
    web_session = WebSession(
        token_hash=secret_digest(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        address=address,
        csrf_token=secrets.token_urlsafe(32),
    )
    session.add(web_session)
    session.flush()
    return SignedIn(user=user, web_session=web_session, token=token)


def resume(session: Session, token: str, now: datetime, idle: timedelta) -> SignedIn | None:
    """The session for a cookie, touched as seen now; None when it ended or never existed.

    A session idle for longer than ``idle`` is revoked here, so it cannot come back.
    """
    found = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == secret_digest(token))
    ).one_or_none()
    if found is None:
        return None
    web_session, user = found
    if web_session.revoked_at is not None or user.disabled:
        return None
    if now - web_session.last_seen_at > idle:
        web_session.revoked_at = now
        return None
    web_session.last_seen_at = now
    return SignedIn(user=user, web_session=web_session, token=token)


def sign_out(session: Session, token: str, now: datetime) -> None:
    web_session = session.scalar(select(WebSession).where(WebSession.token_hash == secret_digest(token)))
    if web_session is not None and web_session.revoked_at is None:
        web_session.revoked_at = now
