"""The staff web app under test: a fixed clock, an admin and a staff login, signed-in clients."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from outreach.accounts import users
from outreach.config import Settings
from outreach.db import transaction
from outreach.web.app import create_app

NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ADMIN = "admin@clinic.example.org"
STAFF = "nurse@clinic.example.org"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Clock:
    """What the app takes as now; tests move it forward by hand."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def staff_app(settings: Settings, factory: sessionmaker[Session], clock: Clock) -> FastAPI:
    with transaction(factory) as session:
        for email, role in ((ADMIN, "admin"), (STAFF, "staff")):
            users.add_user(session, email, role, PASSWORD, NOW)
    # Its own upload folder: a test that sweeps old uploads must not sweep another run's.
    uploads = Path(tempfile.mkdtemp(prefix="outreach-uploads-test-"))
    return create_app(settings, factory, enqueue_inbound=lambda _id: None, clock=clock, uploads_dir=uploads)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(settings: Settings, session_factory: sessionmaker[Session], clock: Clock) -> FastAPI:
    """The whole web app with an admin and a staff login; modules import this fixture."""
    return staff_app(settings, session_factory, clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Sign in through the login form; returns a CSRF token for the session's forms."""
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/").text)
