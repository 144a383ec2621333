"""The SMTP email adapter against a real local SMTP server (aiosmtpd), and its failure table."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from outreach.channels import Attachment, DeliveryError, Effect, Outgoing
from outreach.channels.smtp.client import SmtpEmail, build_email, message_id_for
from outreach.channels.smtp.errors import Stage, classify_smtp_failure, enhanced_status
from outreach.config import Settings, load_settings
from tests.support.tls import TlsFiles, make_test_tls

PATIENT = "pat.doe@example.net"
FROM = "Bay Area Wellness <care@clinic.example.org>"
NOW = datetime(2025, 3, 10, 16, 30, tzinfo=UTC)
UNSUBSCRIBE = "<https://clinic.example.org/email/unsubscribe/tok123>, <mailto:unsubscribe@clinic.example.org>"


@dataclass
class SinkHandler:
    """An SMTP server that can refuse at any step, or go silent after the message data."""

    mail_reply: str | None = None
    rcpt_reply: str | None = None
    data_reply: str | None = None
    drop_after_data: bool = False
    data_delay: float = 0.0
    received: list[bytes] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    encrypted: list[bool] = field(default_factory=list)  # per message: did it arrive over TLS?

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.sessions.append(id(session))
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.original_content)
        self.encrypted.append(server.transport.get_extra_info("ssl_object") is not None)
        if self.drop_after_data:
            server.transport.close()
            return "250 OK"
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        return self.data_reply or "250 2.0.0 OK: queued"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"clinic" and data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def sink() -> Iterator[tuple[SinkHandler, int]]:
    handler = SinkHandler()
    port = _free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=_authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _settings(port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_tls": "none",
        "smtp_timeout_seconds": 1.0,
        "email_from": FROM,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def provider(sink: tuple[SinkHandler, int]) -> Iterator[SmtpEmail]:
    provider = SmtpEmail.from_settings(_settings(sink[1]))
    yield provider
    provider.close()


def _outgoing(**overrides: object) -> Outgoing:
    values: dict[str, object] = {
        "message_id": 11,
        "channel": "email",
        "category": "education",
        "to": PATIENT,
        "subject": "Your care team: what to expect",
        "body": "Hello,\n.this line starts with a dot\nSee you soon.\n",
        "html": "<p>Hello,</p><p>See you soon.</p>",
        "correlation_id": "5e1dc0de5e1dc0de",
        "headers": {
            "List-Unsubscribe": UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    values.update(overrides)
    return Outgoing(**values)  # type: ignore[arg-type]


def _parse(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_email_arrives_as_text_and_html_with_one_click_unsubscribe(
    sink: tuple[SinkHandler, int], provider: SmtpEmail
) -> None:
    result = provider.send(_outgoing())

    handler, _ = sink
    [raw] = handler.received
    mail = _parse(raw)
    assert mail.get_content_type() == "multipart/alternative"
    text, html = mail.iter_parts()
    assert text.get_content_type() == "text/plain"  # plain first, HTML last (preferred)
    assert html.get_content_type() == "text/html"
    assert ".this line starts with a dot" in text.get_content()  # dot-stuffing undone by the server
    assert mail["Message-ID"] == "<5e1dc0de5e1dc0de@clinic.example.org>"
    assert result.provider_id == "5e1dc0de5e1dc0de@clinic.example.org"
    assert result.status == "sent"
    assert mail["From"] == FROM and mail["To"] == PATIENT
    assert mail["Subject"] == "Your care team: what to expect"
    assert mail["Date"] is not None
    assert mail["List-Unsubscribe"] == UNSUBSCRIBE
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # One line: a folded List-Unsubscribe can break DKIM on some relays.
    assert b"List-Unsubscribe: " + UNSUBSCRIBE.encode() + b"\r\n" in raw


def test_calendar_attachment_makes_a_mixed_message(
    sink: tuple[SinkHandler, int], provider: SmtpEmail
) -> None:
    invite = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
    provider.send(
        _outgoing(
            attachments=(Attachment("visit.ics", "text/calendar; method=PUBLISH", invite),),
            headers={},
        )
    )

    mail = _parse(sink[0].received[0])
    assert mail.get_content_type() == "multipart/mixed"
    body, calendar = mail.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "PUBLISH"
    assert calendar.get_filename() == "visit.ics"
    assert calendar.get_content().replace("\r\n", "\n") == invite.decode().replace("\r\n", "\n")
    assert "List-Unsubscribe" not in mail


def test_text_only_email_is_a_single_part(sink: tuple[SinkHandler, int], provider: SmtpEmail) -> None:
    provider.send(_outgoing(html=None, body="Ünïcode körper\n"))

    mail = _parse(sink[0].received[0])
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().replace("\r\n", "\n") == "Ünïcode körper\n"


def test_one_connection_serves_consecutive_messages(
    sink: tuple[SinkHandler, int], provider: SmtpEmail
) -> None:
    provider.send(_outgoing())
    provider.send(_outgoing(correlation_id="second"))

    handler, _ = sink
    assert len(handler.received) == 2
    assert len(set(handler.sessions)) == 1


def test_login_with_the_configured_credentials(sink: tuple[SinkHandler, int]) -> None:
    good = SmtpEmail.from_settings(_settings(sink[1], smtp_username="clinic", smtp_password="s3cret"))
    good.send(_outgoing())
    good.close()
    bad = SmtpEmail.from_settings(_settings(sink[1], smtp_username="clinic", smtp_password="wrong"))

    with pytest.raises(DeliveryError) as caught:
        bad.send(_outgoing())

    assert caught.value.permanent and caught.value.code == "smtp-535"
    assert len(sink[0].received) == 1


@dataclass(frozen=True)
class ServerMood:
    mail_reply: str | None = None
    rcpt_reply: str | None = None
    data_reply: str | None = None
    drop_after_data: bool = False
    data_delay: float = 0.0


SERVER_FAILURES = [
    # how the server misbehaves, permanent, ambiguous, effect, code
    (ServerMood(mail_reply="451 4.3.0 try later"), False, False, None, "smtp-451"),
    (ServerMood(mail_reply="550 5.7.1 sender not allowed"), True, False, None, "smtp-550"),
    (ServerMood(rcpt_reply="450 4.2.1 mailbox busy"), False, False, None, "smtp-450"),
    (ServerMood(rcpt_reply="452 4.2.2 over quota"), False, False, None, "smtp-452"),
    (ServerMood(rcpt_reply="552 5.2.2 mailbox full"), False, False, None, "smtp-552"),
    (
        ServerMood(rcpt_reply=f"550 5.1.1 <{PATIENT}>: no such user"),
        True,
        False,
        Effect.SUPPRESS_ADDRESS,
        "smtp-550",
    ),
    (ServerMood(rcpt_reply="551 5.1.6 user not local"), True, False, Effect.SUPPRESS_ADDRESS, "smtp-551"),
    (ServerMood(rcpt_reply="553 5.1.3 bad address syntax"), True, False, Effect.SUPPRESS_ADDRESS, "smtp-553"),
    (ServerMood(rcpt_reply="550 5.7.1 relaying denied"), True, False, None, "smtp-550"),
    (ServerMood(rcpt_reply="554 5.7.1 blocked"), True, False, None, "smtp-554"),
    (ServerMood(data_reply="451 4.7.1 greylisted"), False, False, None, "smtp-451"),
    (ServerMood(data_reply="554 5.6.0 message content rejected"), True, False, None, "smtp-554"),
    (ServerMood(drop_after_data=True), False, True, None, "lost-reply"),
    (ServerMood(data_delay=2.0), False, True, None, "lost-reply"),
]


@pytest.mark.parametrize(("mood", "permanent", "ambiguous", "effect", "code"), SERVER_FAILURES)
def test_server_failures_are_classified(
    sink: tuple[SinkHandler, int],
    provider: SmtpEmail,
    mood: ServerMood,
    permanent: bool,
    ambiguous: bool,
    effect: Effect | None,
    code: str,
) -> None:
    handler, _ = sink
    for name, value in vars(mood).items():
        setattr(handler, name, value)

    with pytest.raises(DeliveryError) as caught:
        provider.send(_outgoing())

    error = caught.value
    assert (error.permanent, error.ambiguous, error.effect, error.code) == (
        permanent,
        ambiguous,
        effect,
        code,
    )
    assert PATIENT not in error.detail  # the server's text quoted the address; ours does not


def test_after_a_refusal_the_next_message_goes_out(
    sink: tuple[SinkHandler, int], provider: SmtpEmail
) -> None:
    handler, _ = sink
    handler.rcpt_reply = "451 4.3.0 later"
    with pytest.raises(DeliveryError):
        provider.send(_outgoing())
    handler.rcpt_reply = None

    provider.send(_outgoing())

    assert len(handler.received) == 1


def test_unreachable_server_is_transient() -> None:
    provider = SmtpEmail.from_settings(_settings(_free_port()))
    with pytest.raises(DeliveryError) as caught:
        provider.send(_outgoing())

    assert not caught.value.permanent and not caught.value.ambiguous
    assert caught.value.code == "lost-connect"


def test_email_cannot_be_reconciled() -> None:
    provider = SmtpEmail(lambda: pytest.fail("must not connect"), email_from=FROM)

    assert provider.can_reconcile is False
    assert provider.find_accepted(PATIENT, NOW, "5e1dc0de5e1dc0de") is None


def test_extra_headers_cannot_replace_adapter_headers() -> None:
    with pytest.raises(DeliveryError) as caught:
        build_email(_outgoing(headers={"Message-ID": "<x@y>"}), FROM, NOW)
    assert caught.value.permanent and caught.value.code == "bad-header"


def test_header_injection_is_refused() -> None:
    with pytest.raises(DeliveryError) as caught:
        build_email(_outgoing(headers={"List-Id": "x\r\nBcc: someone@example.net"}), FROM, NOW)
    assert caught.value.permanent


def test_message_id_is_stable_per_correlation_id() -> None:
    assert message_id_for("abc", FROM) == message_id_for("abc", FROM) == "<abc@clinic.example.org>"
    assert build_email(_outgoing(), FROM, NOW)["Date"] == "Mon, 10 Mar 2025 16:30:00 +0000"


def test_from_without_an_address_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="OUTREACH_EMAIL_FROM"):
        SmtpEmail(lambda: pytest.fail("unused"), email_from="Clinic")


# The pure table: stage and reply code (None = connection lost or timed out).
TABLE = [
    (Stage.CONNECT, None, None, False, False, None),
    (Stage.CONNECT, 421, None, False, False, None),
    (Stage.CONNECT, 535, "5.7.8", True, False, None),
    (Stage.CONNECT, 554, None, True, False, None),
    (Stage.MAIL, None, None, False, False, None),
    (Stage.MAIL, 451, "4.3.0", False, False, None),
    (Stage.MAIL, 550, "5.7.1", True, False, None),
    (Stage.RCPT, None, None, False, False, None),
    (Stage.RCPT, 550, "5.1.1", True, False, Effect.SUPPRESS_ADDRESS),
    (Stage.RCPT, 550, None, True, False, Effect.SUPPRESS_ADDRESS),
    (Stage.RCPT, 550, "5.7.1", True, False, None),
    (Stage.RCPT, 552, "5.2.2", False, False, None),
    (Stage.RCPT, 554, None, True, False, None),
    (Stage.DATA, None, None, False, False, None),
    (Stage.DATA, 451, None, False, False, None),
    (Stage.DATA, 554, None, True, False, None),
    (Stage.TRANSFER, None, None, False, False, None),  # the final "." never left: nothing accepted
    (Stage.REPLY, None, None, False, True, None),  # RFC 1047: may have been accepted
    (Stage.REPLY, 451, None, False, False, None),
    (Stage.REPLY, 550, "5.7.1", True, False, None),  # content refusal: the address is fine
]


@pytest.mark.parametrize(("stage", "code", "enhanced", "permanent", "ambiguous", "effect"), TABLE)
def test_smtp_failure_table(
    stage: Stage,
    code: int | None,
    enhanced: str | None,
    permanent: bool,
    ambiguous: bool,
    effect: Effect | None,
) -> None:
    error = classify_smtp_failure(stage, code, enhanced)
    assert (error.permanent, error.ambiguous, error.effect) == (permanent, ambiguous, effect)
    assert error.code is not None and len(error.code) <= 16  # fits messages.error_code


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("5.1.1 <a@b>: unknown", "5.1.1"),
        (b"4.7.1 greylisted", "4.7.1"),
        ("no enhanced code", None),
        (None, None),
    ],
)
def test_enhanced_status_keeps_only_the_code(text: str | bytes | None, status: str | None) -> None:
    assert enhanced_status(text) == status


def test_starttls_required_but_not_offered_is_a_configuration_error(sink: tuple[SinkHandler, int]) -> None:
    provider = SmtpEmail.from_settings(_settings(sink[1], smtp_tls="starttls"))

    with pytest.raises(DeliveryError) as caught:
        provider.send(_outgoing())

    assert caught.value.permanent and caught.value.code == "smtp-config"
    assert sink[0].received == []  # never sent in clear text


# ---- TLS: a real handshake against a certificate from a throwaway CA --------------------


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_test_tls(tmp_path)


@contextmanager
def tls_sink(tls: TlsFiles, mode: str) -> Iterator[tuple[SinkHandler, int]]:
    """An SMTP server that offers STARTTLS and refuses mail and login before it (``starttls``),
    or speaks TLS from the first byte (``ssl``)."""
    handler = SinkHandler()
    port = _free_port()
    secure: dict[str, Any] = (
        {"tls_context": tls.server_context(), "require_starttls": True, "auth_require_tls": True}
        if mode == "starttls"
        else {"ssl_context": tls.server_context(), "auth_require_tls": False}
    )
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=_authenticate, **secure
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_tls_modes_log_in_and_deliver_encrypted(
    tls: TlsFiles, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))  # the relay's CA, trusted
    with tls_sink(tls, mode) as (handler, port):
        provider = SmtpEmail.from_settings(
            _settings(port, smtp_tls=mode, smtp_username="clinic", smtp_password="s3cret")
        )
        try:
            provider.send(_outgoing())
            provider.send(_outgoing(message_id=12, correlation_id="0123456789abcdef"))
        finally:
            provider.close()
    assert handler.encrypted == [True, True]
    assert len(set(handler.sessions)) == 1  # the secured connection is kept for the next message
    assert _parse(handler.received[0])["Subject"] == "Your care team: what to expect"


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_an_untrusted_certificate_sends_nothing(
    tls: TlsFiles, mode: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A relay whose certificate does not verify (wrong CA, a man in the middle) gets neither
    the password nor the message."""
    other = make_test_tls(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca_file))  # trusts some other CA only
    with tls_sink(tls, mode) as (handler, port):
        provider = SmtpEmail.from_settings(
            _settings(port, smtp_tls=mode, smtp_username="clinic", smtp_password="s3cret")
        )
        with pytest.raises(DeliveryError) as caught:
            provider.send(_outgoing())
        provider.close()
    assert handler.received == []
    error = caught.value
    assert not error.ambiguous and not error.permanent  # nothing left: retried once it is fixed
    assert error.code == "smtp-tls" and "certificate" in error.detail
