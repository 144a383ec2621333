"""Staff logins: passwords hashed with argon2, sessions that end, throttled guessing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.accounts import sessions, users
from outreach.models import User

NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)
IDLE = timedelta(minutes=15)
PASSWORD = "correct horse battery"


def add(session: Session, email: str = "nurse@clinic.example.org", role: str = "staff") -> User:
    with session.begin():
        return users.add_user(session, email, role, PASSWORD, NOW)


def test_a_password_is_stored_only_as_an_argon2id_hash(session: Session) -> None:
    add(session)
    stored = session.scalars(select(User.password_hash)).one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_logins_are_one_per_email_whatever_its_case(session: Session) -> None:
    add(session, "Nurse@Clinic.example.org")
    with pytest.raises(users.AccountError, match="already exists"), session.begin():
        users.add_user(session, "nurse@clinic.EXAMPLE.org", "staff", PASSWORD, NOW)


def test_short_passwords_and_unknown_roles_are_refused_with_the_reason(session: Session) -> None:
    with pytest.raises(users.AccountError, match="at least 10 characters"), session.begin():
        users.add_user(session, "a@clinic.example.org", "staff", "short", NOW)
    with pytest.raises(users.AccountError, match="admin or staff"), session.begin():
        users.add_user(session, "a@clinic.example.org", "owner", PASSWORD, NOW)


def sign_in(session: Session, email: str, password: str, address: str, at: datetime) -> sessions.SignedIn:
    with session.begin():
        outcome = sessions.sign_in(session, email, password, address, at)
    assert isinstance(outcome, sessions.SignedIn), outcome
    return outcome


def refused(session: Session, email: str, password: str, address: str, at: datetime) -> str:
    with session.begin():
        outcome = sessions.sign_in(session, email, password, address, at)
    assert isinstance(outcome, sessions.Refused), outcome
    return outcome.reason


def test_right_password_opens_a_session_that_the_cookie_token_resumes(session: Session) -> None:
    add(session)
    signed_in = sign_in(session, "nurse@clinic.example.org", PASSWORD, "10.0.0.7", NOW)
    with session.begin():
        resumed = sessions.resume(session, signed_in.token, NOW + timedelta(minutes=5), IDLE)
    assert resumed is not None and resumed.user.email == "nurse@clinic.example.org"
    # Only a hash of the cookie's token is stored.
    assert signed_in.web_session.token_hash != signed_in.token


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(session: Session) -> None:
    add(session)
    for email in ("nurse@clinic.example.org", "nobody@clinic.example.org"):
        reason = refused(session, email, "wrong password", "10.0.0.7", NOW)
        assert reason == "the email address or password is not right"


def test_a_session_idle_longer_than_the_limit_ends_and_stays_ended(session: Session) -> None:
    add(session)
    token = sign_in(session, "nurse@clinic.example.org", PASSWORD, "10.0.0.7", NOW).token
    with session.begin():
        assert sessions.resume(session, token, NOW + IDLE + timedelta(seconds=1), IDLE) is None
    with session.begin():
        assert sessions.resume(session, token, NOW + IDLE, IDLE) is None


def test_activity_keeps_a_session_alive_past_the_idle_limit_from_sign_in(session: Session) -> None:
    add(session)
    token = sign_in(session, "nurse@clinic.example.org", PASSWORD, "10.0.0.7", NOW).token
    for minutes in (10, 20, 30):
        with session.begin():
            assert sessions.resume(session, token, NOW + timedelta(minutes=minutes), IDLE) is not None


def test_disabling_or_resetting_a_login_ends_its_sessions(session: Session) -> None:
    add(session)
    add(session, "doctor@clinic.example.org")
    nurse = sign_in(session, "nurse@clinic.example.org", PASSWORD, "10.0.0.7", NOW).token
    doctor = sign_in(session, "doctor@clinic.example.org", PASSWORD, "10.0.0.7", NOW).token
    with session.begin():
        users.disable_user(session, "nurse@clinic.example.org", NOW)
        users.set_password(session, "doctor@clinic.example.org", "a whole new password", NOW)
    with session.begin():
        assert sessions.resume(session, nurse, NOW, IDLE) is None
        assert sessions.resume(session, doctor, NOW, IDLE) is None
    refused(session, "nurse@clinic.example.org", PASSWORD, "10.0.0.7", NOW)
    sign_in(session, "doctor@clinic.example.org", "a whole new password", "10.0.0.7", NOW)


def test_after_five_failures_an_account_is_locked_even_for_the_right_password(session: Session) -> None:
    add(session)
    for n in range(sessions.MAX_FAILURES_PER_ACCOUNT):
        refused(session, "nurse@clinic.example.org", "wrong password", f"10.0.0.{n}", NOW)
    reason = refused(session, "nurse@clinic.example.org", PASSWORD, "10.0.1.1", NOW)
    assert reason.startswith("too many failed sign-ins")
    later = NOW + sessions.THROTTLE_WINDOW + timedelta(seconds=1)
    sign_in(session, "nurse@clinic.example.org", PASSWORD, "10.0.1.1", later)


def test_one_address_guessing_many_accounts_is_locked_out(session: Session) -> None:
    add(session)
    for n in range(sessions.MAX_FAILURES_PER_ADDRESS):
        refused(session, f"guess{n}@clinic.example.org", "wrong password", "203.0.113.9", NOW)
    reason = refused(session, "nurse@clinic.example.org", PASSWORD, "203.0.113.9", NOW)
    assert reason.startswith("too many failed sign-ins")
    sign_in(session, "nurse@clinic.example.org", PASSWORD, "10.0.0.7", NOW)
