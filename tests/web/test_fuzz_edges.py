"""Fuzz the edges with arbitrary text and bytes (hypothesis): the contacts CSV reader and both
Twilio webhooks. Whatever arrives: no 5xx, no exception but the documented one, and the good
data beside the junk is kept. On both databases."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings
from outreach.contacts import CsvUnusable, import_contacts_csv
from outreach.models import InboundMessage, Message, MessageState, utcnow
from outreach.outbox import transition
from outreach.text import strip_control
from tests.support.contacts_csv import CLINIC, HEADER, stored
from tests.support.factories import STAMPED_AT, make_contact, make_message
from tests.support.replies import form
from tests.support.webhooks import SMS_PATH, STATUS_PATH, post_signed, web_client

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_sids = itertools.count(10**20)
DELIVERED_SID = "SM" + "d" * 32


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(cells)  # Excel dialect: quotes cells holding \r or \n
    return out.getvalue()


@FUZZ
@given(cells=st.lists(st.text(max_size=40), min_size=10, max_size=12))
def test_a_junk_row_between_good_rows_never_costs_the_good_ones(
    session: Session, tmp_path: Path, cells: list[str]
) -> None:
    path = tmp_path / "fuzz.csv"
    content = HEADER + "\nG1,Ann,Lee,9252891430,,,,,,\n" + _csv_line(cells) + "G2,Bob,Ray,9252891431,,,,,,\n"
    path.write_bytes(content.encode("utf-8", "surrogatepass"))
    try:
        report = import_contacts_csv(session, path, clinic_timezone=CLINIC, workers=1, now=utcnow())
        ids = {c["external_id"] for c in stored(session)}
    finally:
        session.rollback()
    assert {"G1", "G2"} <= ids
    # A row of blank cells is skipped, like spreadsheets' trailing rows.
    assert report.rows in (2, 3)
    assert report.added + report.updated + report.unchanged + report.rejected == report.rows
    assert all(error.line == 3 for error in report.errors)


@FUZZ
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_are_imported_or_refused_as_unusable(
    session: Session, tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(HEADER.encode() + b"\n" + data)
    try:
        report = import_contacts_csv(session, path, clinic_timezone=CLINIC, workers=1, now=utcnow())
    except CsvUnusable as exc:
        assert str(exc).startswith("fuzz.csv")
    else:
        assert report.exit_code in (0, 1)
    finally:
        session.rollback()


@pytest.fixture
def client(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    with session_factory.begin() as session:
        message = make_message(session, make_contact(session))
        transition(
            session, message.id, [MessageState.SCHEDULED], MessageState.DELIVERED, provider_id=DELIVERED_SID,
            now=STAMPED_AT,
        )
    with web_client(settings, session_factory, []) as test_client:
        yield test_client


@FUZZ
@given(body=st.text(max_size=300), sender=st.text(max_size=20), extra=st.text(max_size=30))
def test_signed_inbound_sms_with_any_text_is_stored_cleanly_or_refused_with_400(
    client: TestClient, session_factory: sessionmaker[Session], body: str, sender: str, extra: str
) -> None:
    sid = f"SM{next(_sids):032d}"
    fields = form(body, from_=sender or "+15105550101", sid=sid, ProfileName=extra)
    response = post_signed(client, SMS_PATH, fields)
    assert response.status_code in (200, 400), response.text
    with session_factory() as session:
        row = session.scalars(select(InboundMessage).where(InboundMessage.provider_sid == sid)).first()
    if response.status_code == 200:
        assert row is not None and row.body == strip_control(body, multiline=True)
    else:
        assert row is None


@FUZZ
@given(status=st.text(max_size=30), error=st.text(max_size=20), extra=st.text(max_size=30))
def test_signed_status_callbacks_with_any_text_never_fail_or_move_a_message_back(
    client: TestClient, session_factory: sessionmaker[Session], status: str, error: str, extra: str
) -> None:
    fields = {"MessageSid": DELIVERED_SID, "MessageStatus": status, "ErrorCode": error, "To": extra}
    response = post_signed(client, STATUS_PATH, fields)
    assert response.status_code in (200, 400), response.text
    with session_factory() as session:
        message = session.scalars(select(Message).where(Message.provider_id == DELIVERED_SID)).one()
        assert message.state == MessageState.DELIVERED
        assert message.provider_status in (None, "delivered", "read")


@FUZZ
@given(data=st.binary(max_size=600), path=st.sampled_from([SMS_PATH, STATUS_PATH]))
def test_arbitrary_bytes_posted_to_a_webhook_get_a_4xx(client: TestClient, data: bytes, path: str) -> None:
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = client.post(
            path, content=data, headers={"Content-Type": content_type, "X-Twilio-Signature": "x"}
        )
        assert 400 <= response.status_code < 500, response.text


@FUZZ
@given(token=st.text(min_size=1, max_size=80))
def test_any_unsubscribe_token_gets_a_page_never_a_5xx(client: TestClient, token: str) -> None:
    path = "/unsubscribe/" + quote(token, safe="")
    for response in (client.get(path), client.post(path, data={"List-Unsubscribe": "One-Click"})):
        assert response.status_code in (400, 404), response.text
