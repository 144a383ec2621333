"""A Twilio-compatible subset of the 2010-04-01 Messages API: create, fetch, list.

Shapes, status codes and error bodies follow Twilio's OpenAPI description
(tests/web/test_sandbox_contract.py checks them). The create path stays lean, since benchmarks
push thousands of requests a second through it: hand-parsed form body, one short lock, no I/O.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from outreach.sandbox.callbacks import StatusProgression
from outreach.sandbox.formats import (
    API_VERSION,
    E164,
    MAX_BODY_CHARS,
    MAX_VALIDITY_PERIOD,
    MESSAGING_SERVICE_SID,
    DateFilterError,
    error_json,
    is_date_only,
    parse_date_filter,
)
from outreach.sandbox.records import SmsRecord
from outreach.sandbox.state import SandboxState

JSON = "application/json"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def twilio_error(code: int, message: str | None = None) -> Response:
    status, body = error_json(code, message)
    headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else None
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def _json(document: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(document).encode(), status_code=status, media_type=JSON)


def _form(raw: bytes) -> dict[str, str]:
    """First value of each form field (the fields we read are single-valued)."""
    form: dict[str, str] = {}
    for key, value in parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True):
        form.setdefault(key, value)
    return form


def _valid_callback_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "_" not in (parts.hostname or "")


class MessagesApi:
    def __init__(
        self,
        state: SandboxState,
        progression: StatusProgression,
        *,
        account_sid: str,
        auth_token: str,
        default_from: str,
    ) -> None:
        self._state = state
        self._progression = progression
        self._account_sid = account_sid
        self._default_from = default_from
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._expected_auth = f"Basic {credentials}".encode()

    def routes(self) -> list[BaseRoute]:
        account = f"/{API_VERSION}/Accounts/{{account_sid}}"
        return [
            Route(f"{account}/Messages.json", self.create, methods=["POST"]),
            Route(f"{account}/Messages.json", self.list, methods=["GET"]),
            Route(f"{account}/Messages/{{sid}}.json", self.fetch, methods=["GET"]),
            Route(f"/{API_VERSION}/{{rest:path}}", self.not_found, methods=["GET", "POST", "DELETE"]),
        ]

    def _refuse(self, request: Request) -> Response | None:
        """401 unless Basic auth matches the configured account; 404 for another account's path."""
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._expected_auth):
            return twilio_error(20003)
        if request.path_params.get("account_sid") != self._account_sid:
            return twilio_error(20404)
        return None

    async def not_found(self, request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._expected_auth):
            return twilio_error(20003)
        return twilio_error(20404)

    async def create(self, request: Request) -> Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        form = _form(await request.body())
        problem = self._invalid(form)
        if problem is not None:
            self._state.note_rejection(form.get("To"), problem)
            return twilio_error(problem)
        to = form["To"]
        decision = self._state.decide(to)
        if decision.latency:
            await asyncio.sleep(decision.latency)
        if decision.error is not None and not decision.error.accept:
            assert decision.error.code is not None
            self._state.note_rejection(to, decision.error.code)
            return twilio_error(decision.error.code)
        if self._state.is_opted_out(to):
            self._state.note_rejection(to, 21610)
            return twilio_error(21610)
        validity = form.get("ValidityPeriod")
        record, resource = self._state.accept_outbound(
            to=to,
            from_=form.get("From") or self._default_from,
            body=form["Body"],
            messaging_service_sid=form.get("MessagingServiceSid") or None,
            status_callback=form.get("StatusCallback") or None,
            validity_period=int(validity) if validity else None,
        )
        self._progression.follow(record.sid, decision.delivery)
        if decision.error is not None:  # accepted, yet the answer is an error: ambiguous by design
            assert decision.error.code is not None
            return twilio_error(decision.error.code)
        if decision.hang is not None:
            await self._hold(decision.hang.seconds)
        return _json(resource, 201)

    async def _hold(self, seconds: float) -> None:
        released = asyncio.Event()
        self._state.hangs.add(released)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), timeout=seconds)
        finally:
            self._state.hangs.discard(released)

    @staticmethod
    def _invalid(form: dict[str, str]) -> int | None:
        """The Twilio error code for a malformed create, or None."""
        to = form.get("To")
        if not to:
            return 21604
        if not E164.match(to):
            return 21211
        sender = form.get("From")
        service = form.get("MessagingServiceSid")
        if not sender and not service:
            return 21603
        if service and not MESSAGING_SERVICE_SID.match(service):
            return 21701
        if sender and sender == to:
            return 21266
        body = form.get("Body")
        if not body:
            return 21602
        if len(body) > MAX_BODY_CHARS:
            return 21617
        callback = form.get("StatusCallback")
        if callback and not _valid_callback_url(callback):
            return 21609
        validity = form.get("ValidityPeriod")
        if validity and not (validity.isdigit() and 1 <= int(validity) <= MAX_VALIDITY_PERIOD):
            return 21624
        return None

    async def fetch(self, request: Request) -> Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        resource = self._state.resource(request.path_params["sid"])
        if resource is None:
            return twilio_error(20404)
        return _json(resource)

    async def list(self, request: Request) -> Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        query = dict(request.query_params)
        try:
            match = _filter(query)
        except DateFilterError as exc:
            return twilio_error(20001, f"Invalid parameter DateSent: {exc}")
        size_text = query.get("PageSize", str(DEFAULT_PAGE_SIZE))
        page_text = query.get("Page", "0")
        if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
            return twilio_error(20001, "PageSize must be an integer from 1 to 1000")
        if not page_text.isdigit():
            return twilio_error(20001, "Page must be a non-negative integer")
        size, page = int(size_text), int(page_text)
        token = query.get("PageToken", "")
        before_seq = int(token[2:]) if token.startswith("PA") and token[2:].isdigit() else None
        # With a token the page continues after the previous one, whatever arrived meanwhile.
        offset = 0 if before_seq is not None else page * size
        resources, next_seq = self._state.page(match, before_seq=before_seq, offset=offset, size=size)

        path = request.url.path
        filters = {k: v for k, v in query.items() if k not in ("PageSize", "Page", "PageToken")}

        def uri(page_number: int, page_token: str | None = None) -> str:
            params = {**filters, "PageSize": str(size), "Page": str(page_number)}
            if page_token:
                params["PageToken"] = page_token
            return f"{path}?{urlencode(params)}"

        start = page * size
        document = {
            "messages": resources,
            "page": page,
            "page_size": size,
            "start": start,
            "end": start + max(len(resources) - 1, 0),
            "uri": uri(page, token or None),
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1, f"PA{next_seq}") if next_seq is not None else None,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
        }
        return _json(document)


def _filter(query: dict[str, str]) -> Callable[[SmsRecord], bool]:
    """The list filters: To and From exact, DateSent (day or second), DateSent< and DateSent> inclusive."""
    to = query.get("To")
    sender = query.get("From")
    exact = query.get("DateSent")
    lower = parse_date_filter(query["DateSent>"], upper=False) if query.get("DateSent>") else None
    upper = parse_date_filter(query["DateSent<"], upper=True) if query.get("DateSent<") else None
    day_or_second: tuple[datetime, datetime] | None = None
    if exact:
        # A bare date is the whole day; a timestamp is that second.
        day_or_second = (
            parse_date_filter(exact, upper=False),
            parse_date_filter(exact, upper=is_date_only(exact)),
        )

    def match(record: SmsRecord) -> bool:
        if to is not None and record.to != to:
            return False
        if sender is not None and record.from_ != sender:
            return False
        if lower or upper or day_or_second:
            if record.date_sent is None:
                return False
            # Twilio's dates have whole seconds; so do the bounds clients send.
            sent = record.date_sent.replace(microsecond=0)
            if lower and sent < lower:
                return False
            if upper and sent > upper:
                return False
            if day_or_second and not day_or_second[0] <= sent <= day_or_second[1]:
                return False
        return True

    return match
