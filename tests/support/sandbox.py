"""Start the sandbox for a test (HTTP + SMTP on free ports), and a webhook receiver to point it at.

    with running_sandbox() as sandbox:                 # in-process threads, fast to start
        client = sandbox.twilio_client()               # the real twilio client, pointed at it
        app_settings = sandbox.settings                # Settings aimed at this sandbox
        sandbox.control.inject("error", code=21610)    # control API (outreach.sandbox.control)

``mode="process"`` runs ``outreach sandbox`` as a child process instead (benchmarks, and tests
that kill or restart other processes). A module's fixture is three lines:

    @pytest.fixture
    def sandbox(settings: Settings) -> Iterator[RunningSandbox]:
        with running_sandbox(settings) as running:
            yield running
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator
from twilio.rest import Client

from outreach.config import Settings, load_settings
from outreach.sandbox.control import SandboxControl
from tests.support.processes import free_port
from tests.support.waiting import wait_for

# A syntactically valid account SID (Twilio's pattern ^AC[0-9a-f]{32}$), so contract checks hold.
TEST_ACCOUNT_SID = "AC" + "5a" * 16
TEST_AUTH_TOKEN = "sandbox-test-token"


PORT_ATTEMPTS = 5


@dataclass
class RunningSandbox:
    settings: Settings  # the sandbox's settings; also what an app under test should use
    http_url: str
    smtp_host: str
    smtp_port: int
    control: SandboxControl

    def twilio_client(self, timeout: float | None = None) -> Client:
        """The real twilio client aimed at the sandbox, as compliance brief §5.1 prescribes."""
        from twilio.http.http_client import TwilioHttpClient

        client = Client(
            self.settings.twilio_account_sid,
            self.settings.twilio_auth_token.get_secret_value(),
            environment={},  # ignore TWILIO_REGION / TWILIO_EDGE, which would rewrite the host
            http_client=TwilioHttpClient(timeout=timeout),
        )
        client.api.base_url = self.http_url
        return client


def sandbox_settings(settings: Settings | None = None, **overrides: Any) -> Settings:
    """Test defaults, then the caller's overrides.

    Callbacks come without delay. Without ``settings``, a valid-looking account SID and a test
    token too; with ``settings``, its credentials stay (the app under test must share them).
    """
    if settings is None:
        defaults: dict[str, Any] = {
            "twilio_account_sid": TEST_ACCOUNT_SID,
            "twilio_auth_token": TEST_AUTH_TOKEN,
            "sandbox_callback_delay": 0.0,
        }
        return load_settings(**{**defaults, **overrides})
    return settings.model_copy(update={"sandbox_callback_delay": 0.0, **overrides})


@contextmanager
def running_sandbox(
    settings: Settings | None = None,
    *,
    mode: Literal["thread", "process"] = "thread",
    **overrides: Any,
) -> Iterator[RunningSandbox]:
    """Run a sandbox on free ports until the block ends.

    ``settings`` (e.g. the ``settings`` fixture) supplies credentials, ``public_base_url`` and
    ``twilio_from``; without it, test defaults apply. ``overrides`` are Settings fields.
    """
    base = sandbox_settings(settings, **overrides)
    host = base.sandbox_host
    smtp_port = free_port(host)
    if mode == "thread":
        from outreach.sandbox.server import SandboxServer

        # A port free a moment ago may be taken by then (outgoing connections use the same
        # range): try fresh ones a few times rather than fail a test on the coincidence.
        for attempt in range(PORT_ATTEMPTS):
            try:
                server = SandboxServer(base, host=host, http_port=0, smtp_port=smtp_port)
                break
            except OSError:
                if attempt == PORT_ATTEMPTS - 1:
                    raise
                smtp_port = free_port(host)
        server.start()
        try:
            yield _running(base, host, server.http_port, smtp_port)
        finally:
            server.stop()
        return
    http_port = free_port(host)
    process = subprocess.Popen(
        [sys.executable, "-c", "from outreach.cli.app import main; main()", "sandbox",
         "--host", host, "--http-port", str(http_port), "--smtp-port", str(smtp_port)],
        env={**os.environ, **_environment(base)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    running = _running(base, host, http_port, smtp_port)
    try:
        wait_for(lambda: process.poll() is not None or running.control.health(), timeout=20,
                 what="the sandbox process to answer")
        if process.poll() is not None:
            raise RuntimeError("the sandbox process exited: " + process.stderr.read().decode()[-500:]
                               if process.stderr else "the sandbox process exited")
        yield running
    finally:
        running.control.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()


def _running(settings: Settings, host: str, http_port: int, smtp_port: int) -> RunningSandbox:
    url = f"http://{host}:{http_port}"
    aimed = settings.model_copy(
        update={
            "sandbox_http_port": http_port,
            "sandbox_smtp_port": smtp_port,
            "twilio_api_base_url": url,
            "smtp_host": host,
            "smtp_port": smtp_port,
            "smtp_tls": "none",
        }
    )
    return RunningSandbox(aimed, url, host, smtp_port, SandboxControl(url))


def _environment(settings: Settings) -> dict[str, str]:
    """What the ``outreach sandbox`` child process needs to read the same settings."""
    return {
        "TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": settings.twilio_auth_token.get_secret_value(),
        "OUTREACH_TWILIO_FROM": settings.twilio_from,
        "OUTREACH_PUBLIC_BASE_URL": settings.public_base_url,
        "OUTREACH_SANDBOX_HOST": settings.sandbox_host,
        "OUTREACH_SANDBOX_CALLBACK_DELAY": str(settings.sandbox_callback_delay),
        "OUTREACH_SANDBOX_STATUS_CALLBACKS": str(settings.sandbox_status_callbacks).lower(),
        "OUTREACH_SANDBOX_OPT_OUT_AUTO_REPLY": str(settings.sandbox_opt_out_auto_reply).lower(),
        "OUTREACH_SMTP_USERNAME": settings.smtp_username,
        "OUTREACH_SMTP_PASSWORD": settings.smtp_password.get_secret_value(),
    }


@dataclass(frozen=True)
class ReceivedWebhook:
    path: str  # including the query string
    form: dict[str, str]
    headers: dict[str, str]
    signature_valid: bool


@dataclass
class WebhookReceiver:
    """A stand-in for the app's webhook endpoints: records posts, checks Twilio signatures.

    Signatures are checked against ``url`` + path, the public URL the sandbox was told to call.
    ``status`` is what it answers (set it to 500 to see retries).
    """

    url: str
    auth_token: str
    status: int = 200
    received: list[ReceivedWebhook] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, form: dict[str, str], headers: dict[str, str]) -> int:
        validator = RequestValidator(self.auth_token)
        valid = validator.validate(self.url + path, form, headers.get("x-twilio-signature", ""))
        with self._lock:
            self.received.append(ReceivedWebhook(path, form, headers, bool(valid)))
            return self.status

    def posts(self, path_prefix: str = "") -> list[ReceivedWebhook]:
        with self._lock:
            return [r for r in self.received if r.path.startswith(path_prefix)]


@contextmanager
def webhook_receiver(auth_token: str = TEST_AUTH_TOKEN) -> Iterator[WebhookReceiver]:
    port = free_port()
    receiver = WebhookReceiver(f"http://127.0.0.1:{port}", auth_token)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver.record(self.path, form, headers)
            body = b"<Response/>"
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: bodies are test data
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
