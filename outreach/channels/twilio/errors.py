"""Twilio failures sorted into what dispatch should do, as pure functions tested as tables.

Three moments can fail, and each has its own question:

- the REST create answered with an error (``classify_rest_error``): was it refused for good,
  or may we try again?
- the HTTP exchange broke (``classify_transport_error``): did the request leave? If it may
  have, Twilio may have accepted it, and a blind retry could send the text twice;
- a status callback reports a delivery failure later (``classify_delivery_failure``).

Twilio asks integrators not to build too much logic on error codes, which it refines over
time, so the safe default for anything unlisted is "no automatic retry" (compliance §4.6).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime

from outreach.channels.base import DeliveryError, Effect

# Twilio's ValidityPeriod bounds, in seconds.
VALIDITY_MIN = 1
VALIDITY_MAX = 36_000

# When Twilio says "too many requests" without a Retry-After header.
DEFAULT_RETRY_AFTER_429 = 1.0
DEFAULT_RETRY_AFTER_5XX = 5.0
DEFAULT_RETRY_AFTER_NETWORK = 5.0


@dataclass(frozen=True)
class RestRule:
    permanent: bool
    effect: Effect | None
    detail: str


# Error codes Twilio returns synchronously on create (HTTP 400). Anything else in 4xx is
# permanent without effect on the contact.
REST_ERROR_CODES: dict[int, RestRule] = {
    21211: RestRule(True, Effect.SUPPRESS_ADDRESS, "invalid 'To' phone number"),
    21614: RestRule(True, Effect.SUPPRESS_ADDRESS, "'To' number is not a mobile number"),
    # A geo-permission setting on the account: fix the configuration, keep the number.
    21408: RestRule(True, None, "SMS to this region is not enabled on the Twilio account"),
    21610: RestRule(True, Effect.REVOKE_SMS_CONSENT, "recipient has replied STOP to this sender"),
}


def classify_rest_error(status: int, code: int | None, retry_after: float | None = None) -> DeliveryError:
    """An error response from Messages create, as ``DeliveryError``.

    ``status`` is the HTTP status, ``code`` Twilio's error code (may equal the status when
    the body carried none), ``retry_after`` a parsed Retry-After header if there was one.
    """
    code_text = str(code) if code is not None else str(status)
    if status == 429 or code == 20429:
        # Twilio documents that 429'd requests are never processed: always safe to retry.
        return DeliveryError(
            f"Twilio rate limit (HTTP {status}); request not processed",
            permanent=False,
            code=code_text,
            retry_after=retry_after if retry_after is not None else DEFAULT_RETRY_AFTER_429,
        )
    if status == 504:
        # A gateway gave up waiting on Twilio behind it; Twilio may still have accepted it.
        return DeliveryError(
            "Twilio gateway timeout (HTTP 504); the message may have been accepted",
            permanent=False,
            ambiguous=True,
            code=code_text,
        )
    if status >= 500:
        return DeliveryError(
            f"Twilio server error (HTTP {status})",
            permanent=False,
            code=code_text,
            retry_after=retry_after if retry_after is not None else DEFAULT_RETRY_AFTER_5XX,
        )
    rule = REST_ERROR_CODES.get(code) if code is not None else None
    if rule is not None:
        return DeliveryError(
            f"Twilio refused the message: {rule.detail} (error {code})",
            permanent=rule.permanent,
            code=code_text,
            effect=rule.effect,
        )
    if status in (401, 403):
        return DeliveryError(
            f"Twilio rejected our credentials (HTTP {status}); check TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN",
            permanent=True,
            code=code_text,
        )
    return DeliveryError(
        f"Twilio refused the message (HTTP {status}, error {code_text})",
        permanent=True,
        code=code_text,
    )


class Stage(enum.StrEnum):
    """Where an exchange broke."""

    URL = "url"  # the base URL cannot be used: nothing was attempted
    CONNECT = "connect"  # opening the connection (DNS, refused, timed out, TLS handshake)
    EXCHANGE = "exchange"  # the request began to leave: its outcome is unknown


class TransportError(Exception):
    """An HTTP exchange that broke at ``stage``; ``kind`` names the underlying error's type
    (never its text, which may quote the URL with a patient's number in a list filter)."""

    def __init__(self, stage: Stage, kind: str, *, timed_out: bool = False) -> None:
        super().__init__(f"{stage}: {kind}")
        self.stage = stage
        self.kind = kind
        self.timed_out = timed_out


def classify_transport_error(exc: TransportError) -> DeliveryError:
    """A broken HTTP exchange (no response, or an unreadable one), as the transport reports it
    (``http.PooledHttpClient`` never retries, so each failure arrives as it happened).

    Only failures that certainly happened before the request left are retryable: those while
    connecting (refused, unresolvable, unreachable, timed out, a certificate refused in the
    TLS handshake). A read timeout, a reset connection or a truncated response may follow
    Twilio's accept, so the message becomes ``unknown`` and is reconciled (RFC-1047-style
    duplicate risk).
    """
    if exc.stage == Stage.CONNECT:
        return DeliveryError(
            f"could not connect to Twilio ({exc.kind}); nothing was sent",
            permanent=False,
            code="connect",
            retry_after=DEFAULT_RETRY_AFTER_NETWORK,
        )
    if exc.stage == Stage.URL:
        return DeliveryError(
            "the Twilio API base URL is invalid; check OUTREACH_TWILIO_API_BASE_URL",
            permanent=True,
            code="config",
        )
    return DeliveryError(
        f"no complete answer from Twilio after the request was sent ({exc.kind}); outcome unknown",
        permanent=False,
        ambiguous=True,
        code="timeout" if exc.timed_out else "connection",
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form only; dates are ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 and math.isfinite(seconds) else None


class FailureAction(enum.StrEnum):
    """What to do after Twilio reports that a sent message did not arrive."""

    NONE = "none"  # nothing beyond recording the status
    RETRY_ONCE_LATER = "retry_once_later"  # one delayed re-send, still inside window and expiry
    SUPPRESS = "suppress"  # stop sending SMS to this number until staff re-verify it
    REVOKE_CONSENT = "revoke_consent"  # the number opted out (STOP)
    INVESTIGATE = "investigate"  # no retry; staff look at content, registration or the account


@dataclass(frozen=True)
class DeliveryFailure:
    action: FailureAction
    reason: str
    effect: Effect | None = None
    # For RETRY_ONCE_LATER: how long to wait before the single re-send.
    retry_after: float | None = None


# Hours, not minutes: a handset that is off or a carrier hiccup rarely clears at once.
RETRY_LATER_SECONDS = 2 * 3600.0

DELIVERY_ERROR_CODES: dict[str, DeliveryFailure] = {
    "30003": DeliveryFailure(
        FailureAction.RETRY_ONCE_LATER, "unreachable handset (30003)", retry_after=RETRY_LATER_SECONDS
    ),
    "30008": DeliveryFailure(
        FailureAction.RETRY_ONCE_LATER, "unknown carrier error (30008)", retry_after=RETRY_LATER_SECONDS
    ),
    "30500": DeliveryFailure(
        FailureAction.RETRY_ONCE_LATER, "Twilio internal error (30500)", retry_after=RETRY_LATER_SECONDS
    ),
    "30005": DeliveryFailure(
        FailureAction.SUPPRESS, "unknown or inactive handset (30005)", effect=Effect.SUPPRESS_ADDRESS
    ),
    "30006": DeliveryFailure(
        FailureAction.SUPPRESS, "landline or unreachable carrier (30006)", effect=Effect.SUPPRESS_ADDRESS
    ),
    "21610": DeliveryFailure(
        FailureAction.REVOKE_CONSENT, "recipient replied STOP (21610)", effect=Effect.REVOKE_SMS_CONSENT
    ),
    "30007": DeliveryFailure(
        FailureAction.INVESTIGATE, "filtered by Twilio or the carrier as spam or policy (30007)"
    ),
    "30034": DeliveryFailure(FailureAction.INVESTIGATE, "sender not registered for A2P 10DLC (30034)"),
    "30036": DeliveryFailure(FailureAction.NONE, "validity period expired in Twilio's queue (30036)"),
}

FAILED_STATUSES = frozenset({"failed", "undelivered"})


def classify_delivery_failure(error_code: str | None, status: str) -> DeliveryFailure:
    """What a status callback's ``ErrorCode`` and ``MessageStatus`` ask us to do.

    Codes only matter on a failed or undelivered message; a code on ``sent`` or
    ``delivered`` is informational. An unlisted failure is never retried automatically.
    """
    code = (error_code or "").strip()
    if status not in FAILED_STATUSES:
        return DeliveryFailure(FailureAction.NONE, f"status {status}")
    if not code or code == "0":
        return DeliveryFailure(FailureAction.INVESTIGATE, f"{status} without an error code")
    known = DELIVERY_ERROR_CODES.get(code)
    if known is not None:
        return known
    return DeliveryFailure(FailureAction.INVESTIGATE, f"{status} with unlisted error {code}")


def validity_seconds(
    now_utc: datetime, window_end_utc: datetime, not_after_utc: datetime | None = None
) -> int:
    """Seconds Twilio may hold the message: until the allowed window (or its expiry) closes.

    Rounded down so Twilio never holds it past the deadline; clamped to Twilio's 1..36000.
    A deadline already past gives 1: dispatch should not be sending then, and if it does,
    Twilio drops the message (30036) rather than delivering it at the wrong time.
    """
    deadline = window_end_utc if not_after_utc is None else min(window_end_utc, not_after_utc)
    remaining = math.floor((deadline - now_utc).total_seconds())
    return max(VALIDITY_MIN, min(VALIDITY_MAX, remaining))
