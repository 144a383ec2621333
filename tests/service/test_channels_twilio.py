"""The Twilio SMS adapter, driving the real twilio client against a loopback stub."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outreach.channels import DeliveryError, Effect, Outgoing
from outreach.channels.twilio.client import TwilioSms, make_client, status_callback_url
from outreach.config import Settings, load_settings
from tests.support.tls import TlsFiles, make_test_tls
from tests.support.twilio_stub import ACCOUNT_SID, Behaviour, TwilioStub, running_stub, sent_long_ago
from tests.support.waiting import wait_for

PATIENT = "+14155550123"
SERVICE_SID = "MG" + "1" * 32


@pytest.fixture
def stub() -> Iterator[TwilioStub]:
    with running_stub() as stub:
        yield stub


def _settings(base_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_api_base_url": base_url,
        "twilio_timeout_seconds": 0.5,
        "twilio_messaging_service_sid": SERVICE_SID,
        "public_base_url": "https://clinic.example.org/",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def provider(stub: TwilioStub) -> TwilioSms:
    return TwilioSms.from_settings(_settings(stub.base_url))


def _outgoing(**overrides: object) -> Outgoing:
    values: dict[str, object] = {
        "message_id": 7,
        "channel": "sms",
        "category": "care",
        "to": PATIENT,
        "body": "Bay Area Wellness: see you Tue 10:00. Reply 1 to confirm.",
        "correlation_id": "c0ffee00c0ffee00",
        "validity_period": 3600,
    }
    values.update(overrides)
    return Outgoing(**values)  # type: ignore[arg-type]


def test_send_posts_the_message_with_callback_and_validity(stub: TwilioStub, provider: TwilioSms) -> None:
    result = provider.send(_outgoing())

    assert result.provider_id.startswith("SM")
    assert result.status == "accepted"
    assert result.segments == 1
    [form] = stub.requests
    assert form["To"] == [PATIENT]
    assert form["MessagingServiceSid"] == [SERVICE_SID]
    assert "From" not in form
    assert form["StatusCallback"] == ["https://clinic.example.org/webhooks/twilio/status?c=c0ffee00c0ffee00"]
    assert form["ValidityPeriod"] == ["3600"]


def test_send_uses_from_number_without_a_messaging_service(stub: TwilioStub) -> None:
    provider = TwilioSms.from_settings(
        _settings(stub.base_url, twilio_messaging_service_sid="", twilio_from="+15005550006")
    )
    result = provider.send(_outgoing(validity_period=None))

    assert result.status == "queued"
    [form] = stub.requests
    assert form["From"] == ["+15005550006"]
    assert "MessagingServiceSid" not in form
    assert "ValidityPeriod" not in form
    assert provider.sender == "+15005550006"


def test_provider_without_any_sender_is_refused() -> None:
    settings = _settings("http://127.0.0.1:9", twilio_messaging_service_sid="", twilio_from="")
    with pytest.raises(ValueError, match="OUTREACH_TWILIO_FROM"):
        TwilioSms.from_settings(settings)


def test_correlation_id_is_url_encoded_in_the_callback() -> None:
    assert (
        status_callback_url("https://x.example/", "a b&c")
        == "https://x.example/webhooks/twilio/status?c=a%20b%26c"
    )


# What Twilio answers on create -> how dispatch must treat it.
CREATE_ERRORS = [
    # behaviour, permanent, ambiguous, effect, code, retry_after
    (Behaviour(status=400, code=21211), True, False, Effect.SUPPRESS_ADDRESS, "21211", None),
    (Behaviour(status=400, code=21614), True, False, Effect.SUPPRESS_ADDRESS, "21614", None),
    (Behaviour(status=400, code=21408), True, False, None, "21408", None),
    (Behaviour(status=400, code=21610), True, False, Effect.REVOKE_SMS_CONSENT, "21610", None),
    (Behaviour(status=400, code=21610, rfc9457=True), True, False, Effect.REVOKE_SMS_CONSENT, "21610", None),
    (Behaviour(status=400, code=21999), True, False, None, "21999", None),
    (Behaviour(status=401, code=20003), True, False, None, "20003", None),
    (Behaviour(status=429, code=20429, headers={"Retry-After": "7"}), False, False, None, "20429", 7.0),
    (Behaviour(status=429, code=20429), False, False, None, "20429", 1.0),
    (Behaviour(status=500, code=20500), False, False, None, "20500", 5.0),
    (Behaviour(status=503), False, False, None, "503", 5.0),
    (Behaviour(status=504), False, True, None, "504", None),
]


@pytest.mark.parametrize(
    ("behaviour", "permanent", "ambiguous", "effect", "code", "retry_after"),
    CREATE_ERRORS,
    ids=[f"{b.status}-{b.code}{'-rfc9457' if b.rfc9457 else ''}" for b, *_ in CREATE_ERRORS],
)
def test_create_errors_are_classified(
    stub: TwilioStub,
    provider: TwilioSms,
    behaviour: Behaviour,
    permanent: bool,
    ambiguous: bool,
    effect: Effect | None,
    code: str,
    retry_after: float | None,
) -> None:
    stub.next(behaviour)
    with pytest.raises(DeliveryError) as caught:
        provider.send(_outgoing())

    error = caught.value
    assert (error.permanent, error.ambiguous, error.effect, error.code) == (
        permanent,
        ambiguous,
        effect,
        code,
    )
    assert error.retry_after == retry_after
    # Twilio's own message quotes the number; ours never does.
    assert PATIENT not in error.detail and PATIENT not in str(error)


def test_read_timeout_after_the_request_left_is_ambiguous(stub: TwilioStub, provider: TwilioSms) -> None:
    stub.next(Behaviour(delay=1.5))
    with pytest.raises(DeliveryError) as caught:
        provider.send(_outgoing())

    assert caught.value.ambiguous and not caught.value.permanent
    assert caught.value.code == "timeout"
    assert len(stub.requests) == 1  # it did arrive: a blind retry would send twice


def test_connection_dropped_after_the_request_is_ambiguous(stub: TwilioStub, provider: TwilioSms) -> None:
    stub.next(Behaviour(drop=True))
    with pytest.raises(DeliveryError) as caught:
        provider.send(_outgoing())

    assert caught.value.ambiguous and not caught.value.permanent
    assert len(stub.messages) == 1


def test_sends_share_one_kept_alive_connection(stub: TwilioStub, provider: TwilioSms) -> None:
    for _ in range(3):
        provider.send(_outgoing())

    assert len(stub.messages) == 3
    assert stub.connections == 1


def test_a_connection_the_server_closed_while_idle_is_not_used(stub: TwilioStub, provider: TwilioSms) -> None:
    # Twilio's edge closes idle connections; a POST written into one would fail after leaving
    # and count as an ambiguous send. The next send must open a fresh connection instead.
    stub.next(Behaviour(close_after=True))
    provider.send(_outgoing())
    wait_for(lambda: stub.closed == 1, timeout=5, what="the stub to close the connection")

    result = provider.send(_outgoing(body="second"))

    assert result.provider_id == stub.messages[1].sid
    assert [r["Body"] for r in stub.requests] == [[_outgoing().body], ["second"]]
    assert stub.connections == 2


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_test_tls(tmp_path)


def test_sends_over_https_to_a_trusted_certificate(
    tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    with running_stub(tls.server_context()) as stub:
        provider = TwilioSms.from_settings(_settings(stub.base_url))
        result = provider.send(_outgoing())

    assert stub.base_url.startswith("https://")
    assert result.provider_id == stub.messages[0].sid


def test_a_certificate_that_does_not_verify_sends_nothing_and_is_retried(
    tls: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_test_tls(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca_file))  # trusts some other CA only
    with running_stub(tls.server_context()) as stub:
        provider = TwilioSms.from_settings(_settings(stub.base_url))
        with pytest.raises(DeliveryError) as caught:
            provider.send(_outgoing())

    assert not caught.value.ambiguous and not caught.value.permanent
    assert caught.value.code == "connect"
    assert stub.requests == []


@pytest.mark.parametrize("base_url", ["ftp://api.twilio.com", "http://:8080", "http://127.0.0.1:port"])
def test_an_unusable_base_url_is_a_configuration_error(base_url: str) -> None:
    provider = TwilioSms.from_settings(_settings("http://127.0.0.1:1"))
    provider._client.api.base_url = base_url  # settings refuse such URLs; the transport too
    with pytest.raises(DeliveryError) as caught:
        provider.send(_outgoing())

    assert caught.value.permanent and caught.value.code == "config"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connection_refused_is_transient_and_safe_to_retry() -> None:
    provider = TwilioSms.from_settings(_settings(f"http://127.0.0.1:{_closed_port()}"))
    with pytest.raises(DeliveryError) as caught:
        provider.send(_outgoing())

    assert not caught.value.ambiguous and not caught.value.permanent
    assert caught.value.code == "connect"
    assert caught.value.retry_after is not None


def test_region_in_the_environment_does_not_redirect_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_REGION", "au1")
    client = make_client(_settings("http://127.0.0.1:8025"))

    assert client.get_hostname("http://127.0.0.1:8025/x") == "http://127.0.0.1:8025/x"


def test_find_accepted_finds_a_queued_message_whose_create_answer_was_lost(
    stub: TwilioStub, provider: TwilioSms
) -> None:
    since = datetime.now(UTC)
    stub.next(Behaviour(drop=True))
    with pytest.raises(DeliveryError):
        provider.send(_outgoing())

    found = provider.find_accepted(PATIENT, since, "c0ffee00c0ffee00")

    assert found is not None
    assert found.provider_id == stub.messages[0].sid
    assert found.status == "accepted"


def test_find_accepted_returns_none_when_nothing_arrived(stub: TwilioStub, provider: TwilioSms) -> None:
    stub.add_message(sent_long_ago(PATIENT, body="older", minutes=30, messaging_service_sid=SERVICE_SID))
    stub.add_message(
        sent_long_ago("+14155550999", body="other patient", minutes=0, messaging_service_sid=SERVICE_SID)
    )

    assert provider.find_accepted(PATIENT, datetime.now(UTC) - timedelta(minutes=5), "c1") is None


def test_find_accepted_ignores_messages_from_other_senders(stub: TwilioStub, provider: TwilioSms) -> None:
    stub.add_message(sent_long_ago(PATIENT, body="x", minutes=0, from_="+15550001111"))

    assert provider.find_accepted(PATIENT, datetime.now(UTC) - timedelta(minutes=5), "c1") is None


def test_find_accepted_matches_by_body_when_several_candidates(stub: TwilioStub, provider: TwilioSms) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    provider.send(_outgoing(body="first"))
    provider.send(_outgoing(body="second", correlation_id="c2"))

    with pytest.raises(DeliveryError) as caught:
        provider.find_accepted(PATIENT, since, "c2")
    assert caught.value.ambiguous and caught.value.code == "reconcile-multi"

    found = provider.find_accepted(PATIENT, since, "c2", body="second")
    assert found is not None and found.provider_id == stub.messages[1].sid


def test_find_accepted_when_twilio_is_down_asks_again_later() -> None:
    provider = TwilioSms.from_settings(_settings(f"http://127.0.0.1:{_closed_port()}"))
    with pytest.raises(DeliveryError) as caught:
        provider.find_accepted(PATIENT, datetime.now(UTC), "c1")

    assert not caught.value.permanent and not caught.value.ambiguous


def test_no_phone_number_reaches_the_logs(
    stub: TwilioStub, provider: TwilioSms, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider.send(_outgoing())
    provider.find_accepted(PATIENT, datetime.now(UTC) - timedelta(minutes=1), "c1")

    assert stub.list_queries  # the number did travel in the query string...
    assert all(PATIENT not in record.getMessage() for record in caplog.records)  # ...but not into logs


def test_find_accepted_sends_the_date_filter_in_utc(stub: TwilioStub, provider: TwilioSms) -> None:
    since = datetime(2025, 3, 10, 9, 0, tzinfo=ZoneInfo("America/Los_Angeles"))  # 16:00 UTC

    provider.find_accepted(PATIENT, since, "c1")

    assert stub.list_queries[0]["DateSent>"] == ["2025-03-10T15:58:00Z"]  # less the 2-minute clock margin
