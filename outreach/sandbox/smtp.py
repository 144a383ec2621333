"""The SMTP sink: accepts mail (aiosmtpd), stores it in the mailbox, injects failures on demand."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from outreach.sandbox.mailbox import Mailbox


class SinkHandler:
    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox

    async def handle_RCPT(  # aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        fault = self._mailbox.decide("rcpt", [address])
        if fault is not None:
            return f"{fault.code} {fault.message}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipients = list(envelope.rcpt_tos)
        fault = self._mailbox.decide("data", recipients)
        if fault is not None:
            return f"{fault.code} {fault.message}"
        drop = self._mailbox.decide("drop", recipients)
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        self._mailbox.store(str(envelope.mail_from or ""), recipients, raw)
        if drop is not None and isinstance(server.transport, asyncio.Transport):
            # Stored, then the connection dies before "250": the sender cannot tell it was accepted.
            server.transport.abort()
        return "250 Message accepted for delivery"


class Authenticator:
    """Accept AUTH when no credentials are configured, else only the configured ones."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username.encode()
        self._password = password.encode()

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not self._username:
            return AuthResult(success=True)
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = hmac.compare_digest(auth_data.login, self._username) and hmac.compare_digest(
            auth_data.password, self._password
        )
        return AuthResult(success=ok, handled=False)


def smtp_controller(
    mailbox: Mailbox, host: str, port: int, username: str = "", password: str = ""
) -> Controller:
    return Controller(
        SinkHandler(mailbox),
        hostname=host,
        port=port,
        server_hostname="sandbox.localhost",
        authenticator=Authenticator(username, password),
        auth_require_tls=False,
        ready_timeout=10.0,
    )
