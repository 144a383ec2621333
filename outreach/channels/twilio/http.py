"""The HTTP transport under the ``twilio`` client: keep-alive ``http.client`` connections.

twilio-python takes any ``twilio.http.HttpClient`` (its documented extension point); its
default one goes through ``requests``, which costs about as much CPU per message as
everything else in a send put together (request preparation, hooks, cookies, environment
merging), and urllib3 alone still cost 0.2 ms a message of a worker's 1.1 ms (its pool and
request layers, measured against the sandbox). This one sends the same request (form-encoded
body, query string, Basic auth and the SDK's own headers) over the standard library's
connections, with a timeout on connecting and on each read and **no retries** (a retried POST
could create a second message; ambiguous outcomes are reconciled instead).

Every failure is a ``TransportError`` that says where the exchange broke, which is what
``errors.classify_transport_error`` needs to know: before a connection was open (nothing can
have reached Twilio: safe to retry), or after the request began to leave (Twilio may have
accepted it).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import select
import ssl
import threading
from collections.abc import Mapping
from urllib.parse import SplitResult, urlencode, urlsplit

from twilio.http import HttpClient
from twilio.http.response import Response

from outreach.channels.twilio.errors import Stage, TransportError, parse_retry_after

# twilio's HttpClient logs query strings at INFO, and a list filtered by To puts the patient's
# number there. This logger belongs to no hierarchy and has no handlers, so nothing is emitted.
SILENT_LOGGER = logging.Logger("outreach.twilio.http.silent", level=logging.CRITICAL)
JSON_TYPES = ("application/json", "application/scim+json")
# Idle connections kept per host: one per thread that sends through this client is enough.
POOL_SIZE = 4
DEFAULT_PORTS = {"http": 80, "https": 443}
Connection = http.client.HTTPConnection  # HTTPSConnection is one too


def _encoded(values: Mapping[str, object]) -> str:
    # The SDK already drops unset values; None is dropped here too, as requests would.
    return urlencode([(key, value) for key, value in values.items() if value is not None], doseq=True)


def _target(uri: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an absolute http(s) URL, or TransportError."""
    try:
        parts: SplitResult = urlsplit(uri)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError as exc:  # a port that is not a number, an unbalanced bracket
        raise TransportError(Stage.URL, type(exc).__name__) from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise TransportError(Stage.URL, "unsupported URL")
    path = parts.path or "/"
    return parts.scheme, parts.hostname, port, f"{path}?{parts.query}" if parts.query else path


def _failed(stage: Stage, exc: BaseException) -> TransportError:
    return TransportError(stage, type(exc).__name__, timed_out=isinstance(exc, TimeoutError))


def _dropped(conn: Connection) -> bool:
    """An idle keep-alive connection that the server closed (or that has unexpected bytes
    waiting) must not carry a POST: the request would leave into a dead socket and its
    failure would look like an ambiguous send. urllib3 makes the same check before reuse."""
    sock = conn.sock
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class PooledHttpClient(HttpClient):  # type: ignore[misc]  # twilio ships no types
    """Keep-alive connections behind the twilio SDK, shared by the threads that send through
    it, remembering each thread's last Retry-After header (the SDK's exceptions carry no
    headers, and a 429's Retry-After is the provider's own advice on when to come back)."""

    def __init__(self, *, timeout: float, pool_size: int = POOL_SIZE) -> None:
        super().__init__(SILENT_LOGGER, False, timeout)
        self._pool_size = pool_size
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._tls: ssl.SSLContext | None = None  # made on first use: verifies certificates and names

    def request(
        self,
        method: str,
        uri: str,
        params: Mapping[str, object] | None = None,
        data: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,  # http.client never follows redirects
    ) -> Response:
        self._local.retry_after = None
        seconds = self.timeout if timeout is None else timeout
        if seconds is not None and seconds <= 0:
            raise ValueError(seconds)
        sent_headers = dict(headers or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            sent_headers["Authorization"] = f"Basic {token}"
        scheme, host, port, path = _target(uri)
        if params:
            path = f"{path}{'&' if '?' in path else '?'}{_encoded(params)}"
        body: bytes | None = None
        if data is not None:
            if sent_headers.get("Content-Type") in JSON_TYPES:
                body = json.dumps(data).encode()
            else:
                body = _encoded(data).encode()
                sent_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn = self._connection(scheme, host, port, seconds)
        try:
            conn.request(method.upper(), path, body=body, headers=sent_headers)
            answer = conn.getresponse()
            text = answer.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _failed(Stage.EXCHANGE, exc) from None
        except BaseException:
            conn.close()
            raise
        self._release((scheme, host, port), conn, reusable=not answer.will_close)
        self._local.retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        return Response(answer.status, text, answer.headers)

    @property
    def last_retry_after(self) -> float | None:
        value: float | None = getattr(self._local, "retry_after", None)
        return value

    def _connection(self, scheme: str, host: str, port: int, seconds: float | None) -> Connection:
        """An idle connection to the host that is still open, or a new one, connected."""
        key = (scheme, host, port)
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            if not _dropped(conn):
                assert conn.sock is not None
                conn.sock.settimeout(seconds)
                return conn
            conn.close()
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, port, timeout=seconds, context=self._tls)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=seconds)
        try:
            # Connected here, not by the first request, so that a failure is known to have
            # happened before any byte of the request left.
            conn.connect()
        except OSError as exc:  # refused, unreachable, DNS, timed out, a certificate refused
            conn.close()
            raise _failed(Stage.CONNECT, exc) from None
        return conn

    def _release(self, key: tuple[str, str, int], conn: Connection, *, reusable: bool) -> None:
        if reusable:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._pool_size:
                    idle.append(conn)
                    return
        conn.close()
