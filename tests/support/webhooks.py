"""The web app as `outreach serve` builds it, and Twilio-signed posts to its two webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from outreach.config import Settings, load_settings
from outreach.delivery import status
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
    app = create_app(web_settings(settings), factory, enqueue_inbound=enqueued.extend)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def sign(path: str, fields: dict[str, str]) -> str:
    return str(RequestValidator(TOKEN).compute_signature(PUBLIC_BASE + path, fields))


def post_signed(client: TestClient, path: str, fields: dict[str, str]) -> Response:
    response: Response = client.post(path, data=fields, headers={"X-Twilio-Signature": sign(path, fields)})
    return response


def apply_stored_callbacks(factory: sessionmaker[Session]) -> status.Applied:
    """What the worker's beat-ticked task does with the status callbacks the webhook stored."""
    return status.apply_for(factory, utcnow, run_for=1.0)
