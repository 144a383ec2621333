"""An API client against the real web app on a test database, with a fixed clock and tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings
from outreach.db import transaction
from outreach.web.api import tokens
from outreach.web.app import create_app

# 11:00 in the clinic's zone (America/Los_Angeles): inside the sending window.
NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)


@dataclass
class Api:
    client: TestClient
    app: FastAPI
    staff: dict[str, str]
    admin: dict[str, str]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@contextmanager
def api_client(
    settings: Settings, session_factory: sessionmaker[Session], now: datetime = NOW
) -> Iterator[Api]:
    with transaction(session_factory) as session:
        staff = tokens.issue(session, "booking-sync", "staff", now)
        admin = tokens.issue(session, "it-admin", "admin", now)
    app = create_app(settings, session_factory, enqueue_inbound=lambda _id: None, clock=lambda: now)
    with TestClient(app) as client:
        yield Api(client, app, bearer(staff.secret), bearer(admin.secret))
