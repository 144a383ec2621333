"""What Twilio posts to our webhooks, checked and normalised before anything is written.

The signature proves Twilio sent the form, not that each field is what its name says: Twilio
signs the sorted keys and values run together, so a key/value boundary can shift ("MessageSid"
+ "SM…Body" reads the same as "MessageSidSM…" + "Body") without breaking it. So every field
we use must have Twilio's shape too. A field that does not raises ``InvalidCallback`` naming
the field (never its value, which may be a phone number or a patient's words); the webhook
answers 400 and writes nothing.

Control characters are stripped rather than refused: a patient's text with a stray NUL must
still be stored and screened for crisis language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from outreach.text import strip_control

# Twilio's Message resource statuses (https://www.twilio.com/docs/messaging/api/message-resource).
MESSAGE_STATUSES = frozenset(
    {
        "accepted",
        "scheduled",
        "canceled",
        "queued",
        "sending",
        "sent",
        "failed",
        "delivered",
        "undelivered",
        "receiving",
        "received",
        "read",
        "partially_delivered",
    }
)
# Two letters and 32 hex digits: SM/MM for messages, AC for accounts, MG for services.
_MESSAGE_SID = re.compile(r"\A(?:SM|MM)[0-9a-fA-F]{32}\Z")
_ACCOUNT_SID = re.compile(r"\AAC[0-9a-fA-F]{32}\Z")
# Twilio's error codes are five digits today; six leaves room and fits the column.
_ERROR_CODE = re.compile(r"\A[0-9]{1,6}\Z")
# Our correlation ids are 32 hex digits (uuid4().hex); the column holds 40.
_CORRELATION_ID = re.compile(r"\A[0-9A-Za-z_-]{1,40}\Z")
# What we keep of a callback in the event log: enough for any real one, bounded for junk.
PAYLOAD_MAX_FIELDS = 60
PAYLOAD_MAX_VALUE = 2000
INBOUND_LIMITS = {"From": 32, "To": 32, "OptOutType": 16, "Body": 10_000}


class InvalidCallback(ValueError):
    """A webhook field is missing or malformed. The message names the field only."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field} {problem}")
        self.field = field


@dataclass(frozen=True)
class StatusEvent:
    """A status callback normalised: which message, what status, which error."""

    provider_id: str
    status: str
    error_code: str | None
    correlation_id: str | None
    payload: dict[str, object]


def _clean(form: Mapping[str, str]) -> dict[str, str]:
    return {strip_control(key): strip_control(value, multiline=True) for key, value in form.items()}


def _check_sids(form: Mapping[str, str], sid_field: str) -> str:
    sid = form.get(sid_field, "").strip()
    if not sid:
        raise InvalidCallback(sid_field, "is missing")
    if not _MESSAGE_SID.match(sid):
        raise InvalidCallback(sid_field, "is not a Twilio message SID (SM or MM and 32 hex digits)")
    account = form.get("AccountSid")
    if account is not None and not _ACCOUNT_SID.match(account.strip()):
        raise InvalidCallback("AccountSid", "is not a Twilio account SID (AC and 32 hex digits)")
    return sid


def event_payload(form: Mapping[str, str]) -> dict[str, object]:
    """The callback as kept in the event log: control characters gone, size bounded."""
    kept = list(_clean(form).items())[:PAYLOAD_MAX_FIELDS]
    return {key[:100]: value[:PAYLOAD_MAX_VALUE] for key, value in kept}


def parse_status_callback(form: Mapping[str, str], correlation_id: str | None) -> StatusEvent:
    """A status callback's form (and the ``c`` query parameter we put in its URL) as an event."""
    sid_field = "MessageSid" if "MessageSid" in form else "SmsSid"
    sid = _check_sids(form, sid_field)
    status_field = "MessageStatus" if "MessageStatus" in form else "SmsStatus"
    status = form.get(status_field, "").strip().lower()
    if not status:
        raise InvalidCallback("MessageStatus", "is missing")
    if status not in MESSAGE_STATUSES:
        raise InvalidCallback(status_field, "is not one of Twilio's message statuses")
    error = (form.get("ErrorCode") or "").strip() or None
    if error is not None and not _ERROR_CODE.match(error):
        raise InvalidCallback("ErrorCode", "is not a Twilio error code (digits)")
    if correlation_id is not None and not _CORRELATION_ID.match(correlation_id):
        raise InvalidCallback("c", "(query parameter) is not a correlation id")
    return StatusEvent(sid, status, error, correlation_id or None, event_payload(form))


def parse_inbound_sms(form: Mapping[str, str]) -> dict[str, str]:
    """An inbound SMS's form, checked (SIDs, sizes) and with control characters stripped.

    Required fields and their emptiness are checked where the message is stored
    (``outreach.replies.inbound``); this adds what the signature cannot vouch for.
    """
    _check_sids(form, "MessageSid")
    fields = _clean(form)
    for field, limit in INBOUND_LIMITS.items():
        if len(fields.get(field, "")) > limit:
            raise InvalidCallback(field, f"is longer than {limit} characters")
    # Only the body may span lines; a line break in an address field is junk.
    for field in ("From", "To", "OptOutType"):
        if field in fields:
            fields[field] = strip_control(fields[field])
    return fields
