"""Run the sandbox: the HTTP app (uvicorn) and the SMTP sink (aiosmtpd) in one process."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from aiosmtpd.controller import Controller

from outreach.config import Settings
from outreach.sandbox.app import Sandbox
from outreach.sandbox.smtp import smtp_controller


class SandboxServer:
    def __init__(
        self,
        settings: Settings,
        *,
        host: str | None = None,
        http_port: int | None = None,
        smtp_port: int | None = None,
    ) -> None:
        self.host = host or settings.sandbox_host
        self.http_port = settings.sandbox_http_port if http_port is None else http_port
        self.smtp_port = settings.sandbox_smtp_port if smtp_port is None else smtp_port
        # Bound here, so a busy port is an OSError for the caller and port 0 picks a free one.
        self._socket = _listen(self.host, self.http_port)
        self.http_port = self._socket.getsockname()[1]
        try:
            # aiosmtpd binds in its own thread and reports a busy port only after a timeout.
            _listen(self.host, self.smtp_port).close()
        except OSError:
            self._socket.close()
            raise
        self.sandbox = Sandbox(settings)
        self._smtp: Controller = smtp_controller(
            self.sandbox.state.mailbox,
            self.host,
            self.smtp_port,
            settings.smtp_username,
            settings.smtp_password.get_secret_value(),
        )
        config = uvicorn.Config(
            self.sandbox.asgi,
            host=self.host,
            port=self.http_port,
            log_config=None,  # leave the host process's logging alone
            log_level="warning",
            access_log=False,  # request lines carry phone numbers (list filters, phone pages)
            timeout_graceful_shutdown=2,
            # Long keep-alive, like Twilio's edge: with uvicorn's 5 s a client's pooled connection
            # can close just as a POST goes out, which the app would have to treat as ambiguous.
            timeout_keep_alive=75,
            backlog=4096,
        )
        self._http = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def serve_forever(self) -> None:
        """Run in the foreground until SIGINT/SIGTERM (uvicorn handles the signals)."""
        try:
            self._smtp.start()
        except BaseException:
            self._socket.close()
            raise
        self.sandbox.start()
        try:
            self._http.run(sockets=[self._socket])
        finally:
            self._smtp.stop()
            self.sandbox.close()

    def start(self, timeout: float = 15.0) -> None:
        """Run in background threads; returns once both servers accept connections."""
        try:
            self._smtp.start()
        except BaseException:
            self._socket.close()
            raise
        self.sandbox.start()
        self._thread = threading.Thread(
            target=self._http.run, kwargs={"sockets": [self._socket]}, name="sandbox-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._http.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox HTTP server did not start on {self.http_url}")
            time.sleep(0.01)

    def stop(self) -> None:
        self.sandbox.release_hangs_threadsafe()
        self._http.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()
        self._smtp.stop()
        self.sandbox.close()


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(4096)
    except OSError:
        sock.close()
        raise
    return sock
