"""Adding, listing, disabling staff logins and setting their passwords."""

from __future__ import annotations

import secrets
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from outreach.errors import NotFound, OutreachError
from outreach.models import Role, User, WebSession

MIN_PASSWORD_LENGTH = 10

# argon2-cffi's defaults follow RFC 9106's second recommended profile (argon2id, 64 MiB).
_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class AccountError(OutreachError):
    pass


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AccountError(f"role must be admin or staff, not {role!r}") from None


def add_user(session: Session, email: str, role: str, password: str, now: datetime) -> User:
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise AccountError("the login must be an email address")
    checked_role = check_role(role)
    check_password(password)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise AccountError(f"a login for {email} already exists")
    user = User(email=email, role=checked_role, password_hash=_hasher.hash(password), created_at=now)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise NotFound(f"no login {normalise_email(email)}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def any_admin(session: Session) -> bool:
    query = select(User.id).where(User.role == Role.ADMIN, User.disabled.is_(False)).limit(1)
    return session.scalar(query) is not None


FIRST_ADMIN = "admin@localhost"


def ensure_admin(session: Session, now: datetime) -> tuple[str, str] | None:
    """A first admin login with a random password when no admin can sign in (``make run``).

    Returns (email, password) when one was made: the only time the password exists in clear.
    """
    if any_admin(session):
        return None
    password = secrets.token_urlsafe(12)
    existing = session.scalar(select(User).where(User.email == FIRST_ADMIN))
    if existing is not None:
        existing.role, existing.disabled = Role.ADMIN, False
        set_password(session, FIRST_ADMIN, password, now)
    else:
        add_user(session, FIRST_ADMIN, Role.ADMIN, password, now)
    return FIRST_ADMIN, password


def revoke_sessions(session: Session, user_id: int, now: datetime) -> int:
    result = session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def disable_user(session: Session, email: str, now: datetime) -> User:
    """Disabled logins cannot sign in, and their open sessions end at once."""
    user = get_user(session, email)
    user.disabled = True
    revoke_sessions(session, user.id, now)
    return user


def enable_user(session: Session, email: str) -> User:
    user = get_user(session, email)
    user.disabled = False
    return user


def set_password(session: Session, email: str, password: str, now: datetime) -> User:
    """A new password signs out every browser that used the old one."""
    check_password(password)
    user = get_user(session, email)
    user.password_hash = _hasher.hash(password)
    revoke_sessions(session, user.id, now)
    return user


def verify_password(user: User | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else _DUMMY_HASH, password) and user is not None
    except (VerificationError, InvalidHashError):
        return False
