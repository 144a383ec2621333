"""The web app as `outreach serve` builds it, and Twilio-signed posts to its two webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from outreach.config import Settings, load_settings
from outreach.delivery import ingest
from outreach.models import utcnow
from outreach.web.app import create_app

PUBLIC_BASE = "https://outreach.clinic.example.org"
TOKEN = "webhook-test-token-0123456789abcdef"
SMS_PATH = "/webhooks/twilio/sms"
STATUS_PATH = "/webhooks/twilio/status"


def web_settings(settings: Settings) -> Settings:
    return load_settings(
        database_url=settings.database_url, public_base_url=PUBLIC_BASE, twilio_auth_token=TOKEN
    )


@contextmanager
def web_client(
    settings: Settings, factory: sessionmaker[Session], enqueued: list[int]
) -> Iterator[TestClient]:
    app = create_app(web_settings(settings), factory, enqueue_inbound=enqueued.append)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def sign(path: str, fields: dict[str, str]) -> str:
    return str(RequestValidator(TOKEN).compute_signature(PUBLIC_BASE + path, fields))


def post_signed(client: TestClient, path: str, fields: dict[str, str]) -> Response:
    """Post, and for a stored status callback also apply it, as the apply_status task would."""
    response = post_signed_only(client, path, fields)
    if path == STATUS_PATH and response.status_code == 200:
        ingest.apply_pending(client.app.state.session_factory, utcnow, run_for=60)  # type: ignore[attr-defined]
    return response


def post_signed_only(client: TestClient, path: str, fields: dict[str, str]) -> Response:
    response: Response = client.post(path, data=fields, headers={"X-Twilio-Signature": sign(path, fields)})
    return response
