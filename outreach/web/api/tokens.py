"""API tokens as service functions: issue, list, revoke, and check a presented token.

A token is ``oat_`` plus 32 random bytes (URL-safe base64). Only its SHA-256 is stored, so the
check is a hash look-up: the secret itself is never compared, and the stored hash is compared
again in constant time before it is trusted.
"""

from __future__ import annotations

import enum
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from outreach.accounts.digest import secret_digest
from outreach.errors import NotFound, OutreachError
from outreach.models import ApiToken

PREFIX = "oat_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Writing last_used_at on every request would make every API call a write; a minute is
# precise enough for "is this integration still alive".
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Every API call looks its token up: by the table's columns, not as a mapped object, whose
# loading costs more than the query.
_TOKENS: Table = ApiToken.__table__  # type: ignore[assignment]
_CHECKED = select(
    _TOKENS.c.id, _TOKENS.c.name, _TOKENS.c.role, _TOKENS.c.secret_hash, _TOKENS.c.last_used_at,
    _TOKENS.c.revoked_at,
)


class Role(enum.StrEnum):
    STAFF = "staff"
    ADMIN = "admin"


class TokenError(OutreachError):
    """A token name or role that cannot be used."""


@dataclass(frozen=True)
class IssuedToken:
    name: str
    role: Role
    secret: str  # shown once, never stored


@dataclass(frozen=True)
class Caller:
    """Who is calling the API: the token's name and role."""

    token_id: int
    name: str
    role: Role


def issue(session: Session, name: str, role: str, now: datetime) -> IssuedToken:
    if not NAME_PATTERN.match(name):
        raise TokenError(
            "a token name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    try:
        chosen = Role(role)
    except ValueError:
        raise TokenError("role is staff or admin") from None
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise TokenError(f"a token named {name!r} already exists; revoke it or pick another name")
    secret = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=str(chosen), secret_hash=secret_digest(secret), created_at=now))
    session.flush()
    return IssuedToken(name, chosen, secret)


def all_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def revoke(session: Session, name: str, now: datetime) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise NotFound(f"no token named {name!r}")
    if token.revoked_at is None:
        token.revoked_at = now
    session.flush()
    return token


def authenticate(session: Session, presented: str, now: datetime) -> Caller | None:
    """The caller a presented token stands for, or None (unknown, malformed or revoked)."""
    if not presented.startswith(PREFIX) or len(presented) > 128:
        return None
    digest = secret_digest(presented)
    token = session.execute(_CHECKED.where(_TOKENS.c.secret_hash == digest)).first()
    if token is None or not hmac.compare_digest(token.secret_hash, digest) or token.revoked_at is not None:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(_TOKENS).where(_TOKENS.c.id == token.id).values(last_used_at=now))
    return Caller(token.id, token.name, Role(token.role))
