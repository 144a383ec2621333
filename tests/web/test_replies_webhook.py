"""POST /webhooks/twilio/sms through HTTP: signatures, dedupe, malformed payloads, enqueue after commit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from outreach.config import Settings, load_settings
from outreach.contacts import consent
from outreach.db import make_engine, make_session_factory
from outreach.models import Contact, InboundMessage
from outreach.web import inbound
from tests.support.replies import add_contact, form
from tests.support.waiting import wait_for

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
    with _app_client(web_settings, session_factory, enqueued) as test_client:
        yield test_client


@contextmanager
def _app_client(
    settings: Settings, factory: sessionmaker[Session], enqueued: list[int]
) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(inbound.router)
    app.state.settings = settings
    app.state.session_factory = factory
    app.state.enqueue_inbound = enqueued.extend
    inbound.install_writer(app, factory)
    # The app is reached as http://testserver, like behind a TLS-terminating proxy: the
    # signature must still be checked against the public https URL.
    try:
        with TestClient(app) as test_client:
            yield test_client
    finally:
        app.state.inbound_writer.close()
        app.state.inbound_handover.close()


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
    # Published by the hand-over thread once the batch committed, not before the answer.
    wait_for(lambda: enqueued == [stored.id], what="the stored reply handed to processing")


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
    client.app.state.inbound_handover.close()  # type: ignore[attr-defined]  # all handed over
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


@pytest.mark.parametrize("body", ["hello", "STOP"], ids=["plain", "opt-out"])
def test_a_failing_enqueue_still_answers_twilio_and_keeps_the_message(
    client: TestClient, session: Session, body: str
) -> None:
    """Both ways in: a plain reply (stored with others, enqueued by the batch) and an opt-out
    (stored and applied on its own). The sweep picks them up later."""

    def broken_queue(inbound_ids: Sequence[int]) -> None:
        raise ConnectionError("broker down")

    client.app.state.enqueue_inbound = broken_queue  # type: ignore[attr-defined]
    fields = form(body)
    response = client.post("/webhooks/twilio/sms", data=fields, headers={"X-Twilio-Signature": _sign(fields)})
    assert response.status_code == 200
    assert _stored(session) == 1


def test_yes_from_an_opted_out_number_opts_it_back_in_before_the_answer(
    client: TestClient, session: Session, enqueued: list[int]
) -> None:
    """YES means "opt me back in" only from a number that is opted out: the webhook must read
    the sender's consent for it, not store it as a plain reply."""
    contact = add_contact(session)
    for body in ("STOP", "YES"):
        fields = form(body)
        assert client.post(
            "/webhooks/twilio/sms", data=fields, headers={"X-Twilio-Signature": _sign(fields)}
        ).status_code == 200
    session.expire_all()
    assert consent.state_of(session, contact.id, "sms", "care") == "granted"
    classes = session.scalars(select(InboundMessage.classification).order_by(InboundMessage.id)).all()
    assert classes == ["opt_out", "opt_in"]


def test_replies_arriving_together_are_each_stored_once_and_enqueued_after_their_commit(
    client: TestClient, session_factory: sessionmaker[Session], enqueued: list[int]
) -> None:
    """Forty replies from eight threads at once, ten of them Twilio's retries of another:
    they share transactions (group commit); each is answered once stored, stored once, and
    handed to processing once its row is there."""
    first = [form(f"reply {n}", sid=f"SM{n:032d}") for n in range(30)]
    retries = first[:10]
    enqueued_before_commit: list[int] = []

    def check_then_enqueue(ids: Sequence[int]) -> None:
        with session_factory() as session:
            found = set(session.scalars(select(InboundMessage.id).where(InboundMessage.id.in_(ids))))
        enqueued_before_commit.extend(i for i in ids if i not in found)
        enqueued.extend(ids)

    client.app.state.enqueue_inbound = check_then_enqueue  # type: ignore[attr-defined]
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(
            lambda f: client.post(
                "/webhooks/twilio/sms", data=f, headers={"X-Twilio-Signature": _sign(f)}
            ).status_code,
            first + retries,
        ))
    assert codes == [200] * 40
    with session_factory() as session:
        rows = session.execute(select(InboundMessage.id, InboundMessage.body)).all()
    assert sorted(body for _, body in rows) == sorted(f["Body"] for f in first)
    client.app.state.inbound_handover.close()  # type: ignore[attr-defined]  # all handed over
    assert set(enqueued) == {inbound_id for inbound_id, _ in rows}
    assert enqueued_before_commit == []


def test_a_plain_reply_is_answered_while_a_sender_holds_the_patients_row(pg_url: str) -> None:
    """PostgreSQL's row locks (SQLite locks the whole file): a booking or a send holds the
    patient's contact row; a reply that is neither an opt-out, an opt-in nor crisis language
    does not wait for it."""
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        contact_id = add_contact(session).id
    web = load_settings(database_url=pg_url, public_base_url=PUBLIC_BASE, twilio_auth_token="test-auth-token")
    holder = factory()
    holder.begin()
    holder.execute(select(Contact.id).where(Contact.id == contact_id).with_for_update())
    enqueued: list[int] = []
    with _app_client(web, factory, enqueued) as client, ThreadPoolExecutor(max_workers=1) as pool:
        fields = form("running 5 min late")
        headers = {"X-Twilio-Signature": _sign(fields)}
        posted = pool.submit(client.post, "/webhooks/twilio/sms", data=fields, headers=headers)
        try:
            code = posted.result(timeout=10).status_code
        except TimeoutError:
            code = None
        finally:
            holder.rollback()
            holder.close()
    assert code == 200, "answered while the row is locked"
    with factory() as session:
        stored = session.scalars(select(InboundMessage)).one()
    assert (stored.classification, enqueued) == ("other", [stored.id])
    engine.dispose()
