"""Email through an SMTP relay, with the connection factory injected.

The transaction is driven step by step (MAIL, RCPT, DATA, the message, the verdict) rather
than with ``sendmail``, so a failure is known to have happened before or after the message
data left, which decides between "retry" and "unknown" (see ``classify_smtp``).
"""

from __future__ import annotations

import contextlib
import mimetypes
import re
import smtplib
import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from outreach.channels.base import DeliveryError, Outgoing, SendResult
from outreach.channels.smtp.errors import Stage, classify_smtp_failure, enhanced_status
from outreach.config import Settings
from outreach.models.base import utcnow

SmtpFactory = Callable[[], smtplib.SMTP]

# Lines up to RFC 5322's 998 characters stay unfolded: a folded List-Unsubscribe has broken
# DKIM verification on at least one relay (compliance §3.2). 7-bit transfer encodings keep
# the message valid on relays that do not announce 8BITMIME.
EMAIL_POLICY = policy.SMTP.clone(max_line_length=998, cte_type="7bit")

# Headers the adapter owns; Outgoing.headers may not override them.
RESERVED_HEADERS = frozenset({"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version"})

# The rate limiter's key for email; override its rate with max_mps_overrides["email"].
SMTP_SENDER = "email"

_LEADING_DOT = re.compile(rb"(?m)^\.")


def connection_factory(settings: Settings) -> SmtpFactory:
    """Open, secure and log in to the configured relay; every socket operation has a timeout."""
    host, port = settings.smtp_host, settings.smtp_port
    timeout = settings.smtp_timeout_seconds
    username = settings.smtp_username
    password = settings.smtp_password.get_secret_value()
    tls = settings.smtp_tls

    def connect() -> smtplib.SMTP:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if tls == "ssl":
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        try:
            smtp.ehlo()
            if tls == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if username:
                smtp.login(username, password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    return connect


def sender_domain(email_from: str) -> str:
    address = parseaddr(email_from)[1]
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("OUTREACH_EMAIL_FROM must contain an address like care@clinic.example.org")
    return domain


def message_id_for(correlation_id: str, email_from: str) -> str:
    """Stable per outbox message: a resend after an ambiguous outcome carries the same id,
    which lets receiving systems recognise the duplicate."""
    return f"<{correlation_id}@{sender_domain(email_from)}>"


def build_email(outgoing: Outgoing, email_from: str, now: datetime) -> EmailMessage:
    """The message as the recipient sees it: text first, HTML as the preferred alternative,
    attachments (e.g. an .ics invitation) alongside in multipart/mixed."""
    message = EmailMessage(policy=EMAIL_POLICY)
    message["From"] = email_from
    message["To"] = outgoing.to
    message["Subject"] = outgoing.subject or ""
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id_for(outgoing.correlation_id, email_from)
    for name, value in outgoing.headers.items():
        if name.lower() in RESERVED_HEADERS:
            raise DeliveryError(
                f"extra header {name!r} may not replace one the adapter sets",
                permanent=True,
                code="bad-header",
            )
        try:
            message[name] = value
        except ValueError:
            raise DeliveryError(
                f"extra header {name!r} has an invalid value", permanent=True, code="bad-header"
            ) from None
    message.set_content(outgoing.body)
    if outgoing.html is not None:
        message.add_alternative(outgoing.html, subtype="html")
    for attachment in outgoing.attachments:
        maintype, subtype, params = _content_type(attachment.content_type, attachment.filename)
        message.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
            params=params,
        )
    return message


def _content_type(content_type: str, filename: str) -> tuple[str, str, dict[str, str]]:
    probe = EmailMessage()
    probe["Content-Type"] = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    params = {key: value for key, value in probe["Content-Type"].params.items()}
    return probe.get_content_maintype(), probe.get_content_subtype(), params


def _wire_data(message: EmailMessage) -> bytes:
    """The DATA payload: CRLF lines, leading dots doubled, ending with the lone "."."""
    data = _LEADING_DOT.sub(b"..", message.as_bytes(policy=EMAIL_POLICY))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class SmtpEmail:
    channel = "email"
    # An SMTP server cannot be asked afterwards whether it queued a message.
    can_reconcile = False
    sender = SMTP_SENDER

    def __init__(
        self, connect: SmtpFactory, *, email_from: str, clock: Callable[[], datetime] = utcnow
    ) -> None:
        sender_domain(email_from)  # fail at start-up, not at the first send
        self._connect = connect
        self._email_from = email_from
        self._envelope_from = parseaddr(email_from)[1]
        self._clock = clock
        self._connection: smtplib.SMTP | None = None
        # smtplib connections are not thread-safe; one transaction at a time per provider.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpEmail:
        return cls(connection_factory(settings), email_from=settings.email_from)

    def send(self, outgoing: Outgoing) -> SendResult:
        message = build_email(outgoing, self._email_from, self._clock())
        payload = _wire_data(message)
        with self._lock:
            stage = Stage.CONNECT
            try:
                smtp = self._ready_connection()
                stage = Stage.MAIL
                self._expect(smtp.mail(self._envelope_from), 250, stage)
                stage = Stage.RCPT
                self._expect(smtp.rcpt(outgoing.to), (250, 251), stage)
                stage = Stage.DATA
                self._expect(smtp.docmd("DATA"), 354, stage)
                stage = Stage.TRANSFER
                smtp.send(payload)
                # From here on the server may have the whole message.
                stage = Stage.REPLY
                self._expect(smtp.getreply(), 250, stage)
            except _Refused as refused:
                self._discard()
                raise classify_smtp_failure(refused.stage, refused.code, refused.enhanced) from None
            except smtplib.SMTPResponseException as exc:
                self._discard()
                raise classify_smtp_failure(stage, exc.smtp_code, enhanced_status(exc.smtp_error)) from None
            except UnicodeEncodeError:
                self._discard()
                raise DeliveryError(
                    "recipient address is not ASCII; SMTPUTF8 is not supported",
                    permanent=True,
                    code="smtp-utf8",
                ) from None
            except smtplib.SMTPNotSupportedError:
                self._discard()
                raise DeliveryError(
                    "SMTP server lacks a required extension (STARTTLS or AUTH); check OUTREACH_SMTP_TLS",
                    permanent=True,
                    code="smtp-config",
                ) from None
            except ssl.SSLCertVerificationError:
                # Before login and before any mail: nothing left. Retried, since a renewed
                # certificate or a fixed CA bundle cures it, but named, since a retry alone won't.
                self._discard()
                raise DeliveryError(
                    "SMTP server's TLS certificate did not verify; check OUTREACH_SMTP_HOST, or "
                    "trust the relay's CA with SSL_CERT_FILE; nothing was sent",
                    permanent=False,
                    code="smtp-tls",
                ) from None
            except (smtplib.SMTPException, OSError):
                # Disconnects and timeouts (smtplib turns socket errors into SMTPServerDisconnected).
                self._discard()
                raise classify_smtp_failure(stage, None) from None
        return SendResult(provider_id=str(message["Message-ID"]).strip("<>"), status="sent")

    def find_accepted(
        self, to: str, since: datetime, correlation_id: str, *, body: str | None = None
    ) -> SendResult | None:
        """SMTP has no way to ask whether a message was queued: always None.

        ``can_reconcile = False`` tells reconciliation not to read this None as "never
        arrived": an ambiguous email is closed with a reason for staff, not resent (the
        stable Message-ID lets mail systems spot a duplicate if staff do resend).
        """
        return None

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    self._connection.quit()
                self._discard()

    def _ready_connection(self) -> smtplib.SMTP:
        """Reuse the open connection if the server still answers, else open a new one."""
        if self._connection is not None:
            try:
                if self._connection.noop()[0] == 250:
                    return self._connection
            except (smtplib.SMTPException, OSError):
                pass
            self._discard()
        self._connection = self._connect()
        return self._connection

    def _discard(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @staticmethod
    def _expect(reply: tuple[int, bytes], wanted: int | tuple[int, ...], stage: Stage) -> None:
        code, text = reply
        if code in ((wanted,) if isinstance(wanted, int) else wanted):
            return
        if code == -1:  # smtplib's "no reply line": the connection is gone
            raise _Refused(stage, None, None)
        raise _Refused(stage, code, enhanced_status(text))


class _Refused(Exception):
    def __init__(self, stage: Stage, code: int | None, enhanced: str | None) -> None:
        super().__init__(stage.value)
        self.stage = stage
        self.code = code
        self.enhanced = enhanced
