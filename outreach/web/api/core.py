"""What every /api/v1 route shares: one transaction per call, bearer auth, the rate limit,
the body cap, one error shape, and an audit event for every call (failed ones too).

Routes use ``ApiRoute`` as their route class, so this error handling applies to the API only:
webhooks and staff pages keep their own.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from outreach import audit
from outreach.audit import Actor, ActorKind
from outreach.config import Settings
from outreach.errors import Conflict, NotFound, OutreachError
from outreach.web.api.tokens import Caller, Role, authenticate
from outreach.web.unavailable import RETRY_AFTER_SECONDS

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Limits:
    """Per-process limits. The rate limit is a token bucket per API token, kept in memory: each
    web process counts on its own, so N processes allow N times the rate."""

    rate_per_second: float = 20.0
    burst: int = 100
    max_body_bytes: int = 1_000_000
    # A contacts CSV for POST /contacts/import may be bigger than a JSON body.
    max_import_bytes: int = 20_000_000
    max_page: int = 500


class TokenBucket:
    def __init__(self, rate_per_second: float, burst: int) -> None:
        self._rate = rate_per_second
        self._burst = float(burst)
        self._buckets: dict[int, tuple[float, datetime]] = {}
        self._lock = threading.Lock()

    def take(self, key: int, now: datetime) -> float | None:
        """Take one token; None if granted, else the seconds until one is available."""
        with self._lock:
            level, at = self._buckets.get(key, (self._burst, now))
            elapsed = max((now - at).total_seconds(), 0.0)
            level = min(self._burst, level + elapsed * self._rate)
            if level < 1.0:
                self._buckets[key] = (level, now)
                return (1.0 - level) / self._rate
            self._buckets[key] = (level - 1.0, now)
            return None


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every API error: a sentence, and for invalid input one entry per bad field."""

    detail: str
    errors: list[ErrorItem] = []


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[ErrorItem] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors or []


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": why}
    for status, why in (
        (400, "The body is not valid JSON"),
        (401, "No token, or an unknown or revoked one"),
        (403, "The token's role may not do this"),
        (404, "No such record"),
        (409, "Conflicts with an existing record"),
        (413, "Request body too large"),
        (422, "Invalid input: each bad field named, with why"),
        (429, "Too many requests: retry after Retry-After seconds"),
    )
}


@dataclass
class ApiCall:
    """One API request's transaction, clock reading and caller; handlers add the audit subject."""

    session: Session
    settings: Settings
    now: datetime
    address: str | None
    caller: Caller | None = None
    subject_type: str | None = None
    subject_id: int | str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> Actor:
        return Actor(ActorKind.TOKEN, self.caller.name if self.caller else "(no valid token)", self.address)

    def about(self, subject_type: str, subject_id: int | str | None, **detail: Any) -> None:
        """Name what this call looked at or changed, for its audit event (ids and counts only)."""
        self.subject_type, self.subject_id = subject_type, subject_id
        self.detail.update(detail)

    def record(self, action: str, status: int) -> None:
        audit.record(
            self.session,
            self.actor,
            f"api.{action}",
            self.now,
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            detail={**self.detail, "status": status},
        )


def _error_response(
    status: int, detail: str, errors: list[ErrorItem] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(detail=detail, errors=errors or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _validation_items(exc: RequestValidationError) -> list[ErrorItem]:
    # Pydantic's own entries carry the input value: only the location and the reason go out.
    items = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        items.append(ErrorItem(field=where or "request", message=str(error.get("msg", "invalid"))))
    return items


def _service_error(exc: OutreachError) -> tuple[int, str]:
    if isinstance(exc, NotFound):
        return 404, str(exc)
    if isinstance(exc, Conflict):
        return 409, str(exc)
    return 422, str(exc)


async def _body_within(request: Request, cap: int) -> bool:
    """Read the body, giving up as soon as it passes ``cap`` bytes: a client that sends no
    Content-Length (chunked) cannot make the process buffer more than the cap."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return False
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return False
        chunks.append(chunk)
    # Starlette keeps a body it has read here; FastAPI's handler then reads it from there.
    request._body = b"".join(chunks)
    return True


class ApiRoute(APIRoute):
    """Wraps each API endpoint: body cap, session and transaction, errors, audit."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = super().get_route_handler()
        action = self.name
        route = self

        async def handler(request: Request) -> Response:
            limits: Limits = request.app.state.api_limits
            cap = limits.max_import_bytes if action == "contacts.import" else limits.max_body_bytes
            if not await _body_within(request, cap):
                return route.error_response(413, f"the request body is larger than {cap} bytes")
            factory: sessionmaker[Session] = request.app.state.session_factory
            clock: Clock = request.app.state.clock
            session = factory()
            call = ApiCall(
                session, request.app.state.settings, clock(), request.client.host if request.client else None
            )
            request.state.api_call = call
            # Each hop to the thread pool costs about as much as a small query: the session
            # is closed in the same hop as the commit (or the failure's audit event).
            closed = False
            try:
                try:
                    response = await endpoint(request)
                    await run_in_threadpool(_finish, call, action, response.status_code)
                    closed = True
                    return response
                except ApiError as exc:
                    status, detail, errors, headers = exc.status, exc.detail, exc.errors, exc.headers
                except RequestValidationError as exc:
                    status, detail, errors, headers = 422, "invalid input", _validation_items(exc), {}
                except OutreachError as exc:
                    (status, detail), errors, headers = _service_error(exc), [], {}
                except HTTPException as exc:
                    # FastAPI raises one here only for a body that is not JSON; its wording is vague.
                    status, errors, headers = exc.status_code, [], dict(exc.headers or {})
                    detail = "the request body is not valid JSON" if status == 400 else str(exc.detail)
                except OperationalError as exc:
                    # The database is away (restarting, connections cut): the client may retry.
                    log.error("api %s: database unavailable (%s)", action, type(exc).__name__)
                    status, detail, errors = 503, "the database is not answering; try again", []
                    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
                except Exception as exc:
                    # Only the type: a database error's text can quote the patient data it was given.
                    log.error("api %s failed: %s", action, type(exc).__name__)
                    status, detail, errors, headers = 500, "internal error", [], {}
                await run_in_threadpool(_record_failure, call, action, status)
                closed = True
                return route.error_response(status, detail, errors, headers)
            finally:
                if not closed:
                    await run_in_threadpool(session.close)

        return handler

    def error_response(
        self,
        status: int,
        detail: str,
        errors: list[ErrorItem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        return _error_response(status, detail, errors, headers)


def _finish(call: ApiCall, action: str, status: int) -> None:
    """Audit, commit and close; a failing commit leaves the session open for the error path."""
    call.record(action, status)
    call.session.commit()
    call.session.close()


def _record_failure(call: ApiCall, action: str, status: int) -> None:
    call.session.rollback()
    try:
        call.record(action, status)
        call.session.commit()
    except Exception as exc:
        call.session.rollback()
        log.error("api %s: audit event not written: %s", action, type(exc).__name__)
    finally:
        call.session.close()


_bearer = HTTPBearer(auto_error=False, description="A token from `outreach tokens add NAME`.")


def _authorised(request: Request, credentials: HTTPAuthorizationCredentials | None, role: Role) -> ApiCall:
    call: ApiCall = request.state.api_call
    caller = authenticate(call.session, credentials.credentials, call.now) if credentials else None
    if caller is None:
        challenge = 'Bearer realm="outreach"' + (', error="invalid_token"' if credentials else "")
        raise ApiError(401, "a valid bearer token is required", headers={"WWW-Authenticate": challenge})
    call.caller = caller
    bucket: TokenBucket = request.app.state.api_bucket
    wait = bucket.take(caller.token_id, call.now)
    if wait is not None:
        raise ApiError(429, "too many requests", headers={"Retry-After": str(max(1, math.ceil(wait)))})
    if role == Role.ADMIN and caller.role != Role.ADMIN:
        raise ApiError(403, "this needs an admin token")
    return call


def staff_call(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> ApiCall:
    return _authorised(request, credentials, Role.STAFF)


def admin_call(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> ApiCall:
    return _authorised(request, credentials, Role.ADMIN)


def page_limit(request: Request, limit: int) -> int:
    limits: Limits = request.app.state.api_limits
    return min(limit, limits.max_page)
