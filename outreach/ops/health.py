"""What /healthz checks: the database, the broker and (on request) the providers, each reported
on its own, so an operator sees which one is down rather than "unhealthy"."""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings

# Short: a health check that hangs is read as "down" by the orchestrator anyway.
TIMEOUT = 2.0

Check = Callable[[], None]


def database_check(factory: sessionmaker[Session]) -> Check:
    def check() -> None:
        with factory() as session:
            session.execute(text("SELECT 1"))

    return check


def broker_check(broker_url: str) -> Check:
    def check() -> None:
        from kombu.connection import Connection

        with Connection(broker_url, connect_timeout=TIMEOUT) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1, timeout=TIMEOUT)

    return check


def tcp_check(host: str, port: int) -> Check:
    """Reachability only: logging in would spend provider quota on every probe."""

    def check() -> None:
        with socket.create_connection((host, port), timeout=TIMEOUT):
            pass

    return check


def provider_checks(settings: Settings) -> dict[str, Check]:
    twilio = urlsplit(settings.twilio_api_base_url)
    twilio_port = twilio.port or (443 if twilio.scheme == "https" else 80)
    return {
        "twilio": tcp_check(twilio.hostname or "", twilio_port),
        "smtp": tcp_check(settings.smtp_host, settings.smtp_port),
    }


def report(checks: dict[str, Check]) -> tuple[dict[str, str], bool]:
    """``({"status": "ok", "database": "ok", ...}, True)``; a failed check reads "unreachable"
    (the exception itself is not shown: it may carry a URL with a password)."""
    body: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            body[name] = "ok"
        except Exception:
            body[name] = "unreachable"
    healthy = all(value == "ok" for value in body.values())
    return {"status": "ok" if healthy else "error", **body}, healthy
