"""POST /webhooks/twilio/status through HTTP, on the app `outreach serve` runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from outreach.config import Settings, load_settings
from outreach.models import Message, MessageEvent, MessageState
from outreach.outbox import transition
from outreach.web.app import create_app
from outreach.web.staff.security import SESSION_COOKIE
from tests.support.factories import STAMPED_AT, make_contact, make_message
from tests.support.processes import free_port

PUBLIC_BASE = "https://outreach.clinic.example.org"
TOKEN = "status-test-token"
SID = "SM" + "b" * 32


@pytest.fixture
def client(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    web = load_settings(
        database_url=settings.database_url, public_base_url=PUBLIC_BASE, twilio_auth_token=TOKEN
    )
    with TestClient(create_app(web, session_factory, enqueue_inbound=lambda _id: None)) as test_client:
        yield test_client


@pytest.fixture
def sent_id(session_factory: sessionmaker[Session]) -> int:
    with session_factory.begin() as session:
        message = make_message(session, make_contact(session))
        transition(
            session,
            message.id,
            [MessageState.SCHEDULED],
            MessageState.SENT,
            provider_id=SID,
            correlation_id="c" * 32,
            now=STAMPED_AT,
        )
        return message.id


def _post(
    client: TestClient, fields: dict[str, str], query: str = "?c=" + "c" * 32, signature: str | None = None
) -> int:
    url = PUBLIC_BASE + "/webhooks/twilio/status" + query
    sig = signature if signature is not None else str(RequestValidator(TOKEN).compute_signature(url, fields))
    response = client.post(
        "/webhooks/twilio/status" + query, data=fields, headers={"X-Twilio-Signature": sig}
    )
    return int(response.status_code)


def _events(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(MessageEvent)) or 0


def test_signed_callback_moves_the_message_forward(
    client: TestClient, sent_id: int, session_factory: sessionmaker[Session]
) -> None:
    assert _post(client, {"MessageSid": SID, "MessageStatus": "delivered"}) == 200
    with session_factory() as session:
        assert session.get(Message, sent_id).state == MessageState.DELIVERED  # type: ignore[union-attr]
    assert _events(session_factory) == 1


def test_bad_signature_gets_403_and_writes_nothing(
    client: TestClient, sent_id: int, session_factory: sessionmaker[Session]
) -> None:
    assert _post(client, {"MessageSid": SID, "MessageStatus": "delivered"}, signature="forged") == 403
    assert _post(client, {"MessageSid": SID, "MessageStatus": "delivered"}, signature="") == 403
    with session_factory() as session:
        assert session.get(Message, sent_id).state == MessageState.SENT  # type: ignore[union-attr]
    assert _events(session_factory) == 0


def test_signature_for_another_url_is_refused(
    client: TestClient, sent_id: int, session_factory: sessionmaker[Session]
) -> None:
    fields = {"MessageSid": SID, "MessageStatus": "delivered"}
    internal = RequestValidator(TOKEN).compute_signature(
        "http://testserver/webhooks/twilio/status?c=" + "c" * 32, fields
    )
    assert _post(client, fields, signature=internal) == 403
    assert _events(session_factory) == 0


def test_unknown_message_gets_200_so_twilio_stops_retrying(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    assert _post(client, {"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered"}, query="") == 200
    assert _events(session_factory) == 0


def test_callback_without_status_is_a_400_naming_the_field(client: TestClient, sent_id: int) -> None:
    url = PUBLIC_BASE + "/webhooks/twilio/status"
    fields = {"MessageSid": SID}
    sig = RequestValidator(TOKEN).compute_signature(url, fields)
    response = client.post("/webhooks/twilio/status", data=fields, headers={"X-Twilio-Signature": sig})
    assert response.status_code == 400 and "MessageStatus" in response.text


def test_a_database_that_does_not_answer_gets_503_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real refused connection (nothing listens on the port): Twilio and staff get 503 with
    Retry-After, not a 500, and the log says which route and the error's type, no traceback."""
    down = load_settings(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/outreach",
        public_base_url=PUBLIC_BASE,
        twilio_auth_token=TOKEN,
    )
    fields = {"MessageSid": SID, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}
    with TestClient(create_app(down, enqueue_inbound=lambda _id: None)) as client:
        url = PUBLIC_BASE + "/webhooks/twilio/status?c=" + "c" * 32
        response = client.post(
            "/webhooks/twilio/status?c=" + "c" * 32,
            data=fields,
            headers={"X-Twilio-Signature": str(RequestValidator(TOKEN).compute_signature(url, fields))},
        )
        api = client.get("/api/v1/contacts", headers={"Authorization": "Bearer oat_" + "x" * 40})
        client.cookies.set(SESSION_COOKIE, "a-session-the-database-would-look-up")
        page = client.get("/inbox", follow_redirects=False)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert api.status_code == 503 and api.headers["Retry-After"] == "5"
    assert "try again" in api.json()["detail"]
    assert page.status_code == 503 and "try again" in page.text
    said = [r.getMessage() for r in caplog.records if r.name.startswith("outreach.web")]
    assert "database unavailable for POST /webhooks/twilio/status (OperationalError)" in said
    assert "api contacts.list: database unavailable (OperationalError)" in said
    assert all(r.exc_info is None for r in caplog.records if r.levelname == "ERROR")
