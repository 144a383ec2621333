"""A tiny loopback HTTP stand-in for Twilio's Messages API, for the channel adapter's tests.

It speaks just enough of the 2010-04-01 API (create and list, Twilio's JSON shapes and error
bodies) for the real ``twilio`` client to run against it, and misbehaves on request: error
codes, 429 with Retry-After, 5xx, a slow answer (read timeout), a dropped connection after
the request arrived, a keep-alive connection closed after an answer; over TLS if asked. The
project's full sandbox lives in ``outreach/sandbox``; this stub is only for the adapter's
boundary tests.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ACCOUNT_SID = "AC" + "0" * 32


@dataclass(frozen=True)
class Behaviour:
    """What the stub does with the next create request."""

    status: int = 201
    code: int | None = None  # Twilio error code in the error body
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection without any answer
    # Answer, then close the connection without saying so (no "Connection: close"), as a
    # server does whose keep-alive timeout runs out just after an answer.
    close_after: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    rfc9457: bool = False  # answer errors in the newer problem-details shape


@dataclass
class StoredMessage:
    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    date_created: datetime
    date_sent: datetime | None
    status: str = "queued"
    direction: str = "outbound-api"

    def as_json(self) -> dict[str, Any]:
        return {
            "account_sid": ACCOUNT_SID,
            "api_version": "2010-04-01",
            "body": self.body,
            "date_created": format_datetime(self.date_created, usegmt=True),
            "date_sent": format_datetime(self.date_sent, usegmt=True) if self.date_sent else None,
            "date_updated": format_datetime(self.date_created, usegmt=True),
            "direction": self.direction,
            "error_code": None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {},
            "to": self.to,
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{self.sid}.json",
        }


class _Server(ThreadingHTTPServer):
    # Called with each connection once it is shut down and closed (not before: a test that
    # waits for ``closed`` must find the socket closed, or its client may reuse it).
    on_closed: Callable[[], None]

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.on_closed()

    def handle_error(self, request: object, client_address: object) -> None:
        # A timeout test's client gives up on a delayed answer and closes its end; the handler
        # thread's late write then fails after the test is over. That is the scenario, not an
        # error, and a traceback on stderr lands in whichever later test captures stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class TwilioStub:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.behaviours: deque[Behaviour] = deque()
        self.requests: list[dict[str, list[str]]] = []  # form fields of each create received
        self.list_queries: list[dict[str, list[str]]] = []
        self.messages: list[StoredMessage] = []
        self.connections = 0  # connections accepted
        self.closed = 0  # connections this side closed
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.on_closed = self._count_closed
        self._scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def next(self, *behaviours: Behaviour) -> None:
        self.behaviours.extend(behaviours)

    def _count_closed(self) -> None:
        with self._lock:
            self.closed += 1

    def add_message(self, message: StoredMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _create(self, form: dict[str, list[str]]) -> StoredMessage:
        with self._lock:
            now = datetime.now(UTC).replace(microsecond=0)
            message = StoredMessage(
                sid=f"SM{len(self.messages) + 1:032x}",
                to=form["To"][0],
                from_=form.get("From", [None])[0],
                messaging_service_sid=form.get("MessagingServiceSid", [None])[0],
                body=form.get("Body", [""])[0],
                date_created=now,
                # As at Twilio: a queued message has not been sent yet.
                date_sent=None,
                status="accepted" if "MessagingServiceSid" in form else "queued",
            )
            self.messages.append(message)
            return message

    def _list(self, query: dict[str, list[str]]) -> list[StoredMessage]:
        with self._lock:
            self.list_queries.append(query)
            found = [m for m in self.messages if "To" not in query or m.to == query["To"][0]]
        if "DateSent>" in query:
            after = datetime.strptime(query["DateSent>"][0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            # Messages without a DateSent are not matched by a DateSent filter.
            found = [m for m in found if m.date_sent is not None and m.date_sent >= after]
        return sorted(found, key=lambda m: m.date_created, reverse=True)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with stub._lock:
                    stub.connections += 1

            def _send_json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if not parts.path.endswith("/Messages.json"):
                    self._send_json(404, {"code": 20404, "message": "not found", "status": 404})
                    return
                query = parse_qs(parts.query)
                found = stub._list(query)
                page_size = int(query.get("PageSize", ["50"])[0])
                self._send_json(
                    200,
                    {
                        "messages": [m.as_json() for m in found[:page_size]],
                        "first_page_uri": parts.path,
                        "next_page_uri": None,
                        "previous_page_uri": None,
                        "page": 0,
                        "page_size": page_size,
                        "start": 0,
                        "end": min(len(found), page_size),
                        "uri": self.path,
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                with stub._lock:
                    stub.requests.append(form)
                    behaviour = stub.behaviours.popleft() if stub.behaviours else Behaviour()
                if behaviour.delay:
                    time.sleep(behaviour.delay)
                if behaviour.drop:
                    # The request arrived (and was "accepted"), but no answer ever leaves.
                    stub._create(form)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if behaviour.status >= 400:
                    code = behaviour.code if behaviour.code is not None else behaviour.status
                    if behaviour.rfc9457:
                        payload: dict[str, object] = {
                            "type": f"https://www.twilio.com/docs/errors/{code}",
                            "title": "Error",
                            "status": behaviour.status,
                            "code": code,
                        }
                    else:
                        payload = {
                            "code": code,
                            "message": f"The 'To' number {form.get('To', ['?'])[0]} is not valid.",
                            "more_info": f"https://www.twilio.com/docs/errors/{code}",
                            "status": behaviour.status,
                        }
                    self._send_json(behaviour.status, payload, behaviour.headers)
                    return
                message = stub._create(form)
                self._send_json(201, message.as_json(), behaviour.headers)
                if behaviour.close_after:
                    self.close_connection = True

        return Handler


@contextmanager
def running_stub(tls: ssl.SSLContext | None = None) -> Iterator[TwilioStub]:
    """A stub on a free loopback port; over TLS with ``tls`` (a server context)."""
    stub = TwilioStub(tls)
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()


def sent_long_ago(
    to: str, *, body: str, minutes: int, from_: str | None = None, messaging_service_sid: str | None = None
) -> StoredMessage:
    """A message sent ``minutes`` ago, for reconciliation tests."""
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes)
    return StoredMessage(
        sid=f"SMold{minutes:030d}",
        to=to,
        from_=from_,
        messaging_service_sid=messaging_service_sid,
        body=body,
        date_created=when,
        date_sent=when,
        status="delivered",
    )
