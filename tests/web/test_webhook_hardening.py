"""Both Twilio webhooks against junk a signed request can still carry: never a 500, nothing
half-written, no patient data in the logs. On both databases (PostgreSQL refuses NUL)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings
from outreach.contacts.unsubscribe import _serializer, make_token
from outreach.models import InboundMessage, Message, MessageEvent, MessageState
from outreach.outbox import transition
from tests.support.factories import STAMPED_AT, make_contact, make_message
from tests.support.replies import add_contact, form
from tests.support.webhooks import (
    SMS_PATH,
    STATUS_PATH,
    apply_stored_callbacks,
    post_signed,
    web_client,
    web_settings,
)

PATIENT_PHONE = "+15105550101"
SID = "SM" + "b" * 32


@pytest.fixture
def enqueued() -> list[int]:
    return []


@pytest.fixture
def client(
    settings: Settings, session_factory: sessionmaker[Session], enqueued: list[int]
) -> Iterator[TestClient]:
    with web_client(settings, session_factory, enqueued) as test_client:
        yield test_client


@pytest.fixture
def sent_id(session_factory: sessionmaker[Session]) -> int:
    with session_factory.begin() as session:
        message = make_message(session, make_contact(session))
        transition(
            session, message.id, [MessageState.SCHEDULED], MessageState.SENT, provider_id=SID, now=STAMPED_AT
        )
        return message.id


def _count(factory: sessionmaker[Session], model: type[InboundMessage] | type[MessageEvent]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_signed_crisis_text_with_a_nul_is_stored_without_it_and_screened(
    client: TestClient, session: Session, enqueued: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    add_contact(session)
    body = "I want to kill\x00 myself tonight"
    with caplog.at_level(logging.DEBUG):
        response = post_signed(client, SMS_PATH, form(body, from_=PATIENT_PHONE))
    assert response.status_code == 200
    stored = session.scalars(select(InboundMessage)).one()
    assert stored.body == "I want to kill myself tonight"
    assert stored.classification == "crisis"
    assert enqueued == [stored.id]
    assert PATIENT_PHONE not in caplog.text and "5105550101" not in caplog.text
    assert "tonight" not in caplog.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # Twilio signs keys and values run together: "MessageSid"+"SM…Body…" must not pass.
        ("MessageSid", "SM" + "1" * 32 + "Bodyhello"),
        ("MessageSid", "SM123"),
        ("MessageSid", "SM" + "1" * 31 + "\x00"),
        ("AccountSid", "ACnot-an-account"),
        ("From", "+1" + "5" * 40),
    ],
)
def test_a_signed_inbound_sms_with_a_malformed_field_gets_400_naming_it_and_stores_nothing(
    client: TestClient, session_factory: sessionmaker[Session], enqueued: list[int], field: str, value: str
) -> None:
    fields = {**form("hello"), field: value}
    response = post_signed(client, SMS_PATH, fields)
    assert response.status_code == 400
    assert field in response.text and value not in response.text
    assert _count(session_factory, InboundMessage) == 0 and enqueued == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"MessageStatus": "teleported"}, "MessageStatus"),
        ({"MessageStatus": "d" * 25}, "MessageStatus"),
        ({"MessageStatus": "deliv\x00ered"}, "MessageStatus"),
        ({"MessageStatus": "undelivered", "ErrorCode": "1" * 17}, "ErrorCode"),
        ({"MessageStatus": "undelivered", "ErrorCode": "30003; DROP"}, "ErrorCode"),
        ({"MessageStatus": "delivered", "MessageSid": "SM" + "b" * 32 + "x"}, "MessageSid"),
    ],
)
def test_a_signed_status_callback_with_a_malformed_field_gets_400_and_changes_nothing(
    client: TestClient, session_factory: sessionmaker[Session], sent_id: int,
    fields: dict[str, str], named: str,
) -> None:
    response = post_signed(client, STATUS_PATH, {"MessageSid": SID, **fields})
    assert response.status_code == 400
    assert named in response.text
    assert _count(session_factory, MessageEvent) == 0
    with session_factory() as session:
        row = session.get_one(Message, sent_id)
        assert (row.state, row.provider_status, row.error_code) == (MessageState.SENT, None, None)


def test_control_characters_in_other_status_fields_are_stripped_and_the_event_kept(
    client: TestClient, session_factory: sessionmaker[Session], sent_id: int
) -> None:
    fields = {"MessageSid": SID, "MessageStatus": "delivered", "ChannelStatusMessage": "ok\x00\x1b"}
    assert post_signed(client, STATUS_PATH, fields).status_code == 200
    apply_stored_callbacks(session_factory)
    with session_factory() as session:
        event = session.scalars(select(MessageEvent)).one()
        assert event.payload["ChannelStatusMessage"] == "ok"
        assert session.get_one(Message, sent_id).state == MessageState.DELIVERED


def test_a_late_undelivered_never_sits_beside_state_delivered(
    client: TestClient, session_factory: sessionmaker[Session], sent_id: int
) -> None:
    for status in ("sent", "delivered", "undelivered", "sent"):
        response = post_signed(client, STATUS_PATH, {"MessageSid": SID, "MessageStatus": status})
        assert response.status_code == 200
    apply_stored_callbacks(session_factory)
    with session_factory() as session:
        row = session.get_one(Message, sent_id)
        assert (row.state, row.provider_status, row.error_code) == (MessageState.DELIVERED, "delivered", None)
        assert len(session.scalars(select(MessageEvent)).all()) == 4, "every event is kept"


@pytest.mark.parametrize("path", [SMS_PATH, STATUS_PATH])
def test_a_huge_body_is_refused_before_it_is_parsed(
    client: TestClient, session_factory: sessionmaker[Session], path: str
) -> None:
    junk = {"Body": "x" * (30 * 1024 * 1024)}
    response = client.post(path, data=junk, headers={"X-Twilio-Signature": "anything"})
    assert response.status_code == 413
    assert _count(session_factory, InboundMessage) == 0


@pytest.mark.parametrize(
    ("content_type", "body", "says"),
    [
        ("multipart/form-data", b"no boundary at all", "not a readable form"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="Body"; filename="a.txt"\r\n\r\nhi\r\n--x--\r\n',
            "file upload",
        ),
    ],
    ids=["no-boundary", "file-upload"],
)
def test_a_body_that_is_not_a_text_form_gets_400_not_500(
    client: TestClient, content_type: str, body: bytes, says: str
) -> None:
    for path in (SMS_PATH, STATUS_PATH):
        response = client.post(
            path, content=body, headers={"Content-Type": content_type, "X-Twilio-Signature": "sig"}
        )
        assert response.status_code == 400
        assert says in response.text


def test_an_unsubscribe_token_whose_id_overflows_is_a_bad_link_not_a_500(
    client: TestClient, settings: Settings
) -> None:
    # Only the key can sign one: proves the page holds even if the key leaked.
    token = _serializer(web_settings(settings)).dumps([10**30, "education"])
    for response in (client.get(f"/unsubscribe/{token}"), client.post(f"/unsubscribe/{token}")):
        assert response.status_code == 400
        assert "does not work" in response.text


def test_an_unsubscribe_post_with_a_malformed_body_still_unsubscribes(
    client: TestClient, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        contact_id = make_contact(session).id
    token = make_token(web_settings(settings), contact_id, "education")
    response = client.post(
        f"/unsubscribe/{token}", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"}
    )
    assert response.status_code == 200 and "You are unsubscribed" in response.text
