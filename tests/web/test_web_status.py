"""POST /webhooks/twilio/status through HTTP, on the app `outreach serve` runs."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from outreach.config import Settings, load_settings
from outreach.db import make_engine, make_session_factory
from outreach.models import Message, MessageEvent, MessageState, PendingStatusEvent
from outreach.outbox import transition
from outreach.web.app import create_app
from outreach.web.staff.security import SESSION_COOKIE
from tests.support.factories import STAMPED_AT, make_contact, make_message
from tests.support.processes import free_port
from tests.support.webhooks import apply_stored_callbacks

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
    return _sent(session_factory)


def _sent(session_factory: sessionmaker[Session]) -> int:
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


def test_signed_callback_is_stored_then_moves_the_message_forward(
    client: TestClient, sent_id: int, session_factory: sessionmaker[Session]
) -> None:
    assert _post(client, {"MessageSid": SID, "MessageStatus": "delivered"}) == 200
    with session_factory() as session:
        assert session.get(Message, sent_id).state == MessageState.SENT  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).select_from(PendingStatusEvent)) == 1
    assert apply_stored_callbacks(session_factory).applied == 1
    with session_factory() as session:
        assert session.get(Message, sent_id).state == MessageState.DELIVERED  # type: ignore[union-attr]
    assert _events(session_factory) == 1


def test_concurrent_callbacks_are_each_stored_once(
    client: TestClient, sent_id: int, session_factory: sessionmaker[Session]
) -> None:
    """Forty callbacks posted from eight threads at once share transactions (group commit);
    each is answered only once stored, and each becomes exactly one event."""
    statuses = ["queued", "sent", "delivered", "read", "sent"] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda s: _post(client, {"MessageSid": SID, "MessageStatus": s}), statuses))
    assert codes == [200] * len(statuses)
    with session_factory() as session:
        stored = session.scalar(select(func.count()).select_from(PendingStatusEvent))
    assert stored == len(statuses)
    assert apply_stored_callbacks(session_factory).applied == len(statuses)
    with session_factory() as session:
        message = session.get(Message, sent_id)
        assert message is not None
        assert (message.state, message.provider_status) == (MessageState.DELIVERED, "read")
    assert _events(session_factory) == len(statuses)


def test_callback_for_a_message_a_sender_holds_is_answered_at_once_and_applied_after(pg_url: str) -> None:
    """PostgreSQL's row locks (SQLite locks the whole file): the sender's transaction holds the
    message while it calls the provider. The callback does not wait for it; the applier skips
    the message until the sender lets go."""
    engine = make_engine(pg_url)
    session_factory = make_session_factory(engine)
    sent_id = _sent(session_factory)
    web = load_settings(database_url=pg_url, public_base_url=PUBLIC_BASE, twilio_auth_token=TOKEN)
    sender = session_factory()
    sender.begin()
    sender.execute(select(Message.id).where(Message.id == sent_id).with_for_update())
    try:
        with TestClient(create_app(web, session_factory, enqueue_inbound=lambda _id: None)) as client, \
                ThreadPoolExecutor(max_workers=1) as pool:
            posted = pool.submit(_post, client, {"MessageSid": SID, "MessageStatus": "delivered"})
            assert posted.result(timeout=10) == 200, "answered while the row is locked"
        held = apply_stored_callbacks(session_factory)
        assert (held.applied, held.waiting) == (0, 1)
    finally:
        sender.rollback()
        sender.close()
    assert apply_stored_callbacks(session_factory).applied == 1
    with session_factory() as session:
        assert session.get(Message, sent_id).state == MessageState.DELIVERED  # type: ignore[union-attr]
    engine.dispose()


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
    assert apply_stored_callbacks(session_factory).applied == 0
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
