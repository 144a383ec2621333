"""What the API logs and answers when something it did not expect goes wrong."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient

from outreach.config import load_settings
from outreach.db import make_engine, make_session_factory
from outreach.web.app import create_app
from tests.conftest import TEMPLATES
from tests.support import services
from tests.support.api import NOW

BODY = {"first_name": "Ana", "phone": "+15105550101", "email": "ana@example.org"}


def _create_contact(url: str, caplog: pytest.LogCaptureFixture) -> httpx2.Response:
    engine = make_engine(url)
    app = create_app(
        load_settings(database_url=url, templates_dir=TEMPLATES),
        make_session_factory(engine),
        enqueue_inbound=lambda _id: None,
        clock=lambda: NOW,
    )
    try:
        with caplog.at_level(logging.INFO), TestClient(app, raise_server_exceptions=False) as client:
            response: httpx2.Response = client.post(
                "/api/v1/contacts", json=BODY, headers={"Authorization": "Bearer oat_x"}
            )
            return response
    finally:
        engine.dispose()


def _no_secrets_in(text: str) -> None:
    for secret in ("+15105550101", "ana@example.org", "oat_x", "missing"):
        assert secret not in text


def test_an_unexpected_failure_is_a_bare_500_and_the_log_names_only_its_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A database without the schema: every query fails inside the handler (no such table).
    url = services.create_pg_database("outreach_test_empty")
    try:
        response = _create_contact(url, caplog)
    finally:
        services.drop_pg_database(url)
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "errors": []}
    assert "api contacts.create failed: ProgrammingError" in caplog.text
    _no_secrets_in(caplog.text)


def test_a_database_that_cannot_be_reached_is_a_503_to_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database file in a folder that does not exist: it cannot even be opened.
    response = _create_contact(f"sqlite:///{tmp_path}/missing/outreach.sqlite", caplog)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "the database is not answering; try again", "errors": []}
    assert "api contacts.create: database unavailable (OperationalError)" in caplog.text
    _no_secrets_in(caplog.text)
