"""The sandbox's Messages API through the real twilio client, as the Twilio channel will use it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from outreach.config import Settings
from tests.support.sandbox import RunningSandbox, running_sandbox

PATIENT = "+14155550101"
OTHER = "+14155550102"
CLINIC = "+15005550006"
SERVICE = "MG" + "0123456789abcdef" * 2


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox() as running:
        yield running


def test_create_fetch_and_list_with_the_real_twilio_client(sandbox: RunningSandbox) -> None:
    client = sandbox.twilio_client()
    before = datetime.now(UTC).replace(microsecond=0)

    created = client.messages.create(
        to=PATIENT, from_=CLINIC, body="See you tomorrow at 10:00. Reply STOP to opt out.",
        status_callback="http://127.0.0.1:9/webhooks/twilio/status?d=abc",
        validity_period=3600,
    )

    assert created.sid.startswith("SM") and len(created.sid) == 34
    assert created.status == "queued"
    assert created.direction == "outbound-api"
    assert created.num_segments == "1"
    assert created.account_sid == sandbox.settings.twilio_account_sid
    fetched = client.messages(created.sid).fetch()
    assert (fetched.to, fetched.from_, fetched.body) == (PATIENT, CLINIC, created.body)
    listed = client.messages.list(to=PATIENT, date_sent_after=before)
    assert [m.sid for m in listed] == [created.sid]
    assert client.messages.list(to=PATIENT, date_sent_after=before + timedelta(minutes=5)) == []
    assert client.messages.list(to=OTHER) == []


def test_messaging_service_create_starts_accepted_and_picks_the_clinic_sender(
    sandbox: RunningSandbox,
) -> None:
    created = sandbox.twilio_client().messages.create(
        to=PATIENT, messaging_service_sid=SERVICE, body="Hello"
    )

    assert created.status == "accepted"
    assert created.messaging_service_sid == SERVICE
    assert created.from_ == sandbox.settings.twilio_from


def test_list_pages_newest_first_and_follows_next_page_uri(sandbox: RunningSandbox) -> None:
    client = sandbox.twilio_client()
    sids = [client.messages.create(to=PATIENT, from_=CLINIC, body=f"note {i}").sid for i in range(7)]

    first = client.messages.page(to=PATIENT, page_size=3)
    everything = client.messages.list(to=PATIENT, page_size=3)

    assert [m.sid for m in first] == sids[::-1][:3]
    assert [m.sid for m in everything] == sids[::-1]


def test_date_sent_before_and_a_bare_date_filter_by_whole_days(sandbox: RunningSandbox) -> None:
    client = sandbox.twilio_client()
    sid = client.messages.create(to=PATIENT, from_=CLINIC, body="x").sid
    today = datetime.now(UTC).date()

    assert [m.sid for m in client.messages.list(date_sent=today.isoformat())] == [sid]
    assert client.messages.list(date_sent_before=datetime.now(UTC) - timedelta(hours=1)) == []
    assert [m.sid for m in client.messages.list(date_sent_before=today.isoformat())] == [sid]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"From": CLINIC, "Body": "x"}, 21604),
        ({"To": "4155550101", "From": CLINIC, "Body": "x"}, 21211),
        ({"To": PATIENT, "Body": "x"}, 21603),
        ({"To": PATIENT, "From": CLINIC}, 21602),
        ({"To": PATIENT, "From": CLINIC, "Body": "x" * 1601}, 21617),
        ({"To": PATIENT, "From": PATIENT, "Body": "x"}, 21266),
        ({"To": PATIENT, "MessagingServiceSid": "MG123", "Body": "x"}, 21701),
        ({"To": PATIENT, "From": CLINIC, "Body": "x", "ValidityPeriod": "36001"}, 21624),
        ({"To": PATIENT, "From": CLINIC, "Body": "x", "StatusCallback": "not a url"}, 21609),
    ],
)
def test_invalid_creates_get_twilio_error_bodies_and_are_not_accepted(
    sandbox: RunningSandbox, fields: dict[str, str], code: int
) -> None:
    url = f"{sandbox.http_url}/2010-04-01/Accounts/{sandbox.settings.twilio_account_sid}/Messages.json"
    auth = (sandbox.settings.twilio_account_sid, sandbox.settings.twilio_auth_token.get_secret_value())

    response = httpx.post(url, data=fields, auth=auth)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert body["status"] == 400
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert PATIENT not in body["message"]
    assert sandbox.control.accepts().total == 0


def test_wrong_credentials_get_401_with_code_20003(sandbox: RunningSandbox) -> None:
    client = sandbox.twilio_client()
    client.password = "not-the-token"
    client.auth = (client.username, "not-the-token")

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=PATIENT, from_=CLINIC, body="x")

    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert sandbox.control.accepts().total == 0


def test_fetching_an_unknown_message_is_a_404_with_code_20404(sandbox: RunningSandbox) -> None:
    with pytest.raises(TwilioRestException) as caught:
        sandbox.twilio_client().messages("SM" + "0" * 32).fetch()

    assert (caught.value.status, caught.value.code) == (404, 20404)


def test_another_accounts_path_is_not_found(sandbox: RunningSandbox) -> None:
    auth = (sandbox.settings.twilio_account_sid, sandbox.settings.twilio_auth_token.get_secret_value())
    url = f"{sandbox.http_url}/2010-04-01/Accounts/AC{'1' * 32}/Messages.json"

    response = httpx.get(url, auth=auth)

    assert response.status_code == 404
    assert response.json()["code"] == 20404


def test_accepts_count_each_create_per_number_and_body_and_expose_duplicates(
    sandbox: RunningSandbox,
) -> None:
    client = sandbox.twilio_client()
    client.messages.create(to=PATIENT, from_=CLINIC, body="step 1")
    client.messages.create(to=PATIENT, from_=CLINIC, body="step 2")
    client.messages.create(to=PATIENT, from_=CLINIC, body="step 2")
    client.messages.create(to=OTHER, from_=CLINIC, body="step 1")

    accepts = sandbox.control.accepts()

    assert accepts.total == 4
    assert accepts.count(PATIENT) == 3
    assert accepts.count(PATIENT, "step 2") == 2
    assert accepts.count(OTHER, "step 1") == 1
    assert [(d.to, d.body, d.count) for d in accepts.duplicates] == [(PATIENT, "step 2", 2)]


def test_messages_carry_wall_and_monotonic_accept_times_in_order(sandbox: RunningSandbox) -> None:
    client = sandbox.twilio_client()
    first = client.messages.create(to=PATIENT, from_=CLINIC, body="a").sid
    second = client.messages.create(to=PATIENT, from_=CLINIC, body="b").sid

    messages = {m.sid: m for m in sandbox.control.messages()}

    assert messages[first].accepted_monotonic < messages[second].accepted_monotonic
    assert messages[first].accepted_at <= messages[second].accepted_at
    assert messages[first].accepted_at.tzinfo is not None


def test_reset_forgets_messages_and_counts(sandbox: RunningSandbox) -> None:
    sandbox.twilio_client().messages.create(to=PATIENT, from_=CLINIC, body="a")

    sandbox.control.reset()

    assert sandbox.control.accepts().total == 0
    assert sandbox.control.messages() == []


def test_segments_follow_gsm7_and_ucs2_limits(sandbox: RunningSandbox) -> None:
    client = sandbox.twilio_client()

    assert client.messages.create(to=PATIENT, from_=CLINIC, body="a" * 160).num_segments == "1"
    assert client.messages.create(to=PATIENT, from_=CLINIC, body="a" * 161).num_segments == "2"
    assert client.messages.create(to=PATIENT, from_=CLINIC, body="’" * 70).num_segments == "1"
    assert client.messages.create(to=PATIENT, from_=CLINIC, body="’" * 71).num_segments == "2"


def test_the_fixture_runs_with_the_suites_settings_and_keeps_their_credentials(settings: Settings) -> None:
    with running_sandbox(settings) as sandbox:
        created = sandbox.twilio_client().messages.create(to=PATIENT, from_=CLINIC, body="x")

        assert sandbox.settings.twilio_account_sid == settings.twilio_account_sid
        assert sandbox.settings.twilio_api_base_url == sandbox.http_url
        assert created.account_sid == settings.twilio_account_sid
