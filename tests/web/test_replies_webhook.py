"""POST /webhooks/twilio/sms through HTTP: signatures, dedupe, malformed payloads, enqueue after commit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from outreach.config import Settings, load_settings
from outreach.contacts import consent
from outreach.models import InboundMessage
from outreach.web import inbound
from tests.support.replies import add_contact, form

PUBLIC_BASE = "https://outreach.clinic.example.org"
URL = PUBLIC_BASE + "/webhooks/twilio/sms"


@pytest.fixture
def web_settings(settings: Settings) -> Settings:
    return load_settings(database_url=settings.database_url, public_base_url=PUBLIC_BASE,
                         twilio_auth_token="test-auth-token")


@pytest.fixture
def enqueued() -> list[int]:
    return []


@pytest.fixture
def client(
    web_settings: Settings, session_factory: sessionmaker[Session], enqueued: list[int]
) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(inbound.router)
    app.state.settings = web_settings
    app.state.session_factory = session_factory
    app.state.enqueue_inbound = enqueued.append
    # The app is reached as http://testserver, like behind a TLS-terminating proxy: the
    # signature must still be checked against the public https URL.
    with TestClient(app) as test_client:
        yield test_client


def _sign(fields: dict[str, str], url: str = URL) -> str:
    return str(RequestValidator("test-auth-token").compute_signature(url, fields))


def _stored(session: Session) -> int:
    session.expire_all()
    count = session.scalar(select(func.count()).select_from(InboundMessage)) or 0
    session.commit()
    return count


def test_a_signed_message_is_stored_enqueued_and_answered_with_empty_twiml(
    client: TestClient, session: Session, enqueued: list[int]
) -> None:
    fields = form("running 5 min late")
    response = client.post("/webhooks/twilio/sms", data=fields, headers={"X-Twilio-Signature": _sign(fields)})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Response/>" in response.text
    stored = session.scalars(select(InboundMessage)).one()
    assert stored.body == "running 5 min late" and stored.classification == "other"
    assert enqueued == [stored.id]


def test_a_stop_through_the_webhook_revokes_consent_before_any_task_runs(
    client: TestClient, session: Session, enqueued: list[int]
) -> None:
    contact = add_contact(session)
    fields = form("STOP")
    response = client.post("/webhooks/twilio/sms", data=fields, headers={"X-Twilio-Signature": _sign(fields)})
    assert response.status_code == 200
    session.expire_all()
    assert consent.state_of(session, contact.id, "sms", "care") == "revoked"


@pytest.mark.parametrize("signature", ["not-a-signature", None], ids=["invalid", "missing"])
def test_a_bad_or_missing_signature_gets_403_and_writes_nothing(
    client: TestClient, session: Session, enqueued: list[int], signature: str | None
) -> None:
    contact = add_contact(session)
    fields = form("STOP")
    headers = {"X-Twilio-Signature": signature} if signature else {}
    response = client.post("/webhooks/twilio/sms", data=fields, headers=headers)

    assert response.status_code == 403
    assert _stored(session) == 0 and enqueued == []
    assert consent.state_of(session, contact.id, "sms", "care") == "granted"


def test_a_signature_for_the_internal_url_or_altered_fields_is_refused(
    client: TestClient, session: Session, enqueued: list[int]
) -> None:
    fields = form("hello")
    as_seen_internally = _sign(fields, "http://testserver/webhooks/twilio/sms")
    assert client.post("/webhooks/twilio/sms", data=fields,
                       headers={"X-Twilio-Signature": as_seen_internally}).status_code == 403
    signature = _sign(fields)
    altered = {**fields, "Body": "hello!"}
    assert client.post("/webhooks/twilio/sms", data=altered,
                       headers={"X-Twilio-Signature": signature}).status_code == 403
    assert _stored(session) == 0 and enqueued == []


def test_the_query_string_is_part_of_what_is_signed(
    client: TestClient, session: Session, enqueued: list[int]
) -> None:
    fields = form("hello")
    signature = _sign(fields, URL + "?clinic=main")
    ok = client.post(
        "/webhooks/twilio/sms?clinic=main", data=fields, headers={"X-Twilio-Signature": signature}
    )
    assert ok.status_code == 200
    assert _stored(session) == 1


def test_a_redelivered_message_is_stored_once(
    client: TestClient, session: Session, enqueued: list[int]
) -> None:
    fields = form("hello", sid="SM" + "e" * 32)
    headers = {"X-Twilio-Signature": _sign(fields)}
    first = client.post("/webhooks/twilio/sms", data=fields, headers=headers)
    second = client.post("/webhooks/twilio/sms", data=fields, headers=headers)

    assert (first.status_code, second.status_code) == (200, 200)
    assert _stored(session) == 1
    # Not processed yet (the fake queue runs nothing), so re-enqueueing is allowed and harmless.
    assert len(set(enqueued)) == 1


@pytest.mark.parametrize("missing", ["MessageSid", "From", "Body"])
def test_a_signed_but_malformed_payload_gets_400_naming_the_field(
    client: TestClient, session: Session, enqueued: list[int], missing: str
) -> None:
    fields = form("hello")
    del fields[missing]
    response = client.post("/webhooks/twilio/sms", data=fields, headers={"X-Twilio-Signature": _sign(fields)})

    assert response.status_code == 400
    assert missing in response.text and "hello" not in response.text
    assert _stored(session) == 0 and enqueued == []


def test_a_failing_enqueue_still_answers_twilio_and_keeps_the_message(
    web_settings: Settings, session_factory: sessionmaker[Session], session: Session
) -> None:
    def broken_queue(inbound_id: int) -> None:
        raise ConnectionError("broker down")

    app = FastAPI()
    app.include_router(inbound.router)
    app.state.settings = web_settings
    app.state.session_factory = session_factory
    app.state.enqueue_inbound = broken_queue
    fields = form("hello")
    with TestClient(app) as client:
        response = client.post(
            "/webhooks/twilio/sms", data=fields, headers={"X-Twilio-Signature": _sign(fields)}
        )
    assert response.status_code == 200
    assert _stored(session) == 1
