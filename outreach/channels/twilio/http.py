"""The HTTP transport under the ``twilio`` client: one urllib3 connection pool, kept alive.

twilio-python takes any ``twilio.http.HttpClient`` (its documented extension point); its
default one goes through ``requests``, which costs about as much CPU per message as
everything else in a send put together (request preparation, hooks, cookies, environment
merging). This one sends the same request: form-encoded body, query string, Basic auth and
the SDK's own headers, with a connect and a read timeout and **no retries** (a retried POST
could create a second message; ambiguous outcomes are reconciled instead).

Failures surface as urllib3's exceptions, classified by ``classify_transport_error``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Mapping
from urllib.parse import urlencode

import urllib3
from twilio.http import HttpClient
from twilio.http.response import Response

from outreach.channels.twilio.errors import parse_retry_after

# twilio's HttpClient logs query strings at INFO, and a list filtered by To puts the patient's
# number there. This logger belongs to no hierarchy and has no handlers, so nothing is emitted.
SILENT_LOGGER = logging.Logger("outreach.twilio.http.silent", level=logging.CRITICAL)
JSON_TYPES = ("application/json", "application/scim+json")
# Connections kept open per host: one per thread that sends through this client is enough.
POOL_SIZE = 4


def _encoded(values: Mapping[str, object]) -> str:
    # The SDK already drops unset values; None is dropped here too, as requests would.
    return urlencode([(key, value) for key, value in values.items() if value is not None], doseq=True)


class PooledHttpClient(HttpClient):  # type: ignore[misc]  # twilio ships no types
    """A keep-alive urllib3 pool behind the twilio SDK, remembering each thread's last
    Retry-After header (the SDK's exceptions carry no headers, and a 429's Retry-After is
    the provider's own advice on when to come back)."""

    def __init__(self, *, timeout: float, pool_size: int = POOL_SIZE) -> None:
        super().__init__(SILENT_LOGGER, False, timeout)
        # No proxy from the environment: a clinic that needs one configures it explicitly.
        self._pool = urllib3.PoolManager(maxsize=pool_size, block=False, retries=False)
        self._local = threading.local()

    def request(
        self,
        method: str,
        uri: str,
        params: Mapping[str, object] | None = None,
        data: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self._local.retry_after = None
        seconds = self.timeout if timeout is None else timeout
        if seconds is not None and seconds <= 0:
            raise ValueError(seconds)
        sent_headers = dict(headers or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            sent_headers["Authorization"] = f"Basic {token}"
        url = f"{uri}?{_encoded(params)}" if params else uri
        body: str | None = None
        if data is not None:
            if sent_headers.get("Content-Type") in JSON_TYPES:
                body = json.dumps(data)
            else:
                body = _encoded(data)
                sent_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        answer = self._pool.request(
            method.upper(),
            url,
            body=body,
            headers=sent_headers,
            redirect=allow_redirects,
            retries=False,
            timeout=urllib3.Timeout(connect=seconds, read=seconds),
        )
        self._local.retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        return Response(answer.status, answer.data.decode("utf-8", errors="replace"), answer.headers)

    @property
    def last_retry_after(self) -> float | None:
        value: float | None = getattr(self._local, "retry_after", None)
        return value
