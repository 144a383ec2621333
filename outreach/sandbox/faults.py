"""Failure injection rules, parsed from the control API's JSON.

An SMS rule applies to one number (``to``) or to every number, to a share of requests
(``rate``) and optionally only to the next ``count`` matches. Kinds:

- ``error``: answer the create with a Twilio error (21211, 21408, 21610, 21614, 20429 = HTTP 429,
  20500 = HTTP 500). With ``accept: true`` the message is recorded first: an "accepted but the
  answer says otherwise" case for ambiguity tests.
- ``delivery``: accept, then report ``undelivered`` (or ``failed``) with a 300xx ErrorCode.
- ``latency``: wait ``seconds`` before handling the request.
- ``hang``: record the message as accepted, then withhold the answer for ``seconds`` (or until
  reset), as a Twilio that accepted but never answered before the client's timeout.

A mail rule applies to one recipient or all, at ``rcpt`` (reply ``code`` to RCPT TO), ``data``
(reply ``code`` after DATA, nothing stored) or ``drop`` (store the mail, then cut the connection
without a reply: the sender cannot know it was accepted).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from outreach.sandbox.formats import DELIVERY_ERRORS, SYNC_FAULT_CODES

SmsFaultKind = Literal["error", "delivery", "latency", "hang"]
MailFaultStage = Literal["rcpt", "data", "drop"]
DEFAULT_HANG_SECONDS = 30.0


class FaultError(ValueError):
    """A rule the control API cannot accept; the message names the field."""


@dataclass
class SmsFault:
    id: str
    kind: SmsFaultKind
    to: str | None = None
    rate: float = 1.0
    count: int | None = None  # remaining matches; None = unlimited
    code: int | None = None
    status: str | None = None  # delivery: "undelivered" | "failed"
    seconds: float = 0.0
    accept: bool = False

    def matches(self, to: str) -> bool:
        return self.to is None or self.to == to

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MailFault:
    id: str
    stage: MailFaultStage
    recipient: str | None = None
    code: int = 451
    message: str = "Requested action aborted: local error in processing"
    rate: float = 1.0
    count: int | None = None

    def matches(self, recipient: str) -> bool:
        return self.recipient is None or self.recipient.lower() == recipient.lower()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _rate(data: dict[str, Any]) -> float:
    rate = data.get("rate", 1.0)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
        raise FaultError("rate must be a number from 0 to 1")
    return float(rate)


def _count(data: dict[str, Any]) -> int | None:
    count = data.get("count")
    if count is None:
        return None
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise FaultError("count must be a positive integer or null")
    return count


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise FaultError(f"{key} must be a string or null")
    return value


def parse_sms_fault(data: dict[str, Any]) -> SmsFault:
    kind = data.get("kind")
    if kind not in ("error", "delivery", "latency", "hang"):
        raise FaultError("kind must be one of error, delivery, latency, hang")
    fault = SmsFault(
        id=uuid.uuid4().hex[:12],
        kind=cast(SmsFaultKind, kind),
        to=_optional_str(data, "to"),
        rate=_rate(data),
        count=_count(data),
        accept=bool(data.get("accept", False)),
    )
    code = data.get("code")
    if kind == "error":
        if code not in SYNC_FAULT_CODES:
            raise FaultError(f"code for an error must be one of {sorted(SYNC_FAULT_CODES)}")
        fault.code = int(code)
    elif kind == "delivery":
        if code not in DELIVERY_ERRORS:
            raise FaultError(f"code for a delivery failure must be one of {sorted(DELIVERY_ERRORS)}")
        fault.code = int(code)
        status = data.get("status", "undelivered")
        if status not in ("undelivered", "failed"):
            raise FaultError("status must be undelivered or failed")
        fault.status = status
    else:
        seconds = data.get("seconds", DEFAULT_HANG_SECONDS if kind == "hang" else None)
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise FaultError("seconds must be a number >= 0")
        fault.seconds = float(seconds)
    return fault


def parse_mail_fault(data: dict[str, Any]) -> MailFault:
    stage = data.get("stage", "rcpt")
    if stage not in ("rcpt", "data", "drop"):
        raise FaultError("stage must be one of rcpt, data, drop")
    fault = MailFault(
        id=uuid.uuid4().hex[:12],
        stage=cast(MailFaultStage, stage),
        recipient=_optional_str(data, "recipient"),
        rate=_rate(data),
        count=_count(data),
    )
    if stage != "drop":
        code = data.get("code", 451)
        if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599:
            raise FaultError("code must be an SMTP reply code from 400 to 599")
        fault.code = code
        message = data.get("message")
        if message is not None:
            if not isinstance(message, str) or "\n" in message or "\r" in message:
                raise FaultError("message must be a single line of text")
            fault.message = message
        elif code >= 500:
            fault.message = "Requested action not taken: mailbox unavailable"
    return fault
