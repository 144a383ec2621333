"""What the API logs and answers when something it did not expect goes wrong."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from outreach.config import load_settings
from outreach.db import make_engine, make_session_factory
from outreach.web.app import create_app
from tests.conftest import TEMPLATES
from tests.support.api import NOW


def test_an_unexpected_failure_is_a_bare_500_and_the_log_names_only_its_type(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database file in a folder that does not exist: every query fails inside the handler.
    url = f"sqlite:///{tmp_path}/missing/outreach.sqlite"
    engine = make_engine(url)
    app = create_app(
        load_settings(database_url=url, templates_dir=TEMPLATES),
        make_session_factory(engine),
        enqueue_inbound=lambda _id: None,
        clock=lambda: NOW,
    )
    body = {"first_name": "Ana", "phone": "+15105550101", "email": "ana@example.org"}
    with caplog.at_level(logging.INFO), TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/api/v1/contacts", json=body, headers={"Authorization": "Bearer oat_x"})
    engine.dispose()
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "errors": []}
    assert "api contacts.create failed: OperationalError" in caplog.text
    for secret in ("+15105550101", "ana@example.org", "oat_x", "missing"):
        assert secret not in caplog.text
