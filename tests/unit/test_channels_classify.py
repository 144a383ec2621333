"""Twilio error classification tables: transport failures, delivery-time codes, ValidityPeriod."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from outreach.channels import Effect
from outreach.channels.twilio.errors import (
    FailureAction,
    Stage,
    TransportError,
    classify_delivery_failure,
    classify_transport_error,
    parse_retry_after,
    validity_seconds,
)

TRANSPORT = [
    # failure (as PooledHttpClient reports it), ambiguous (may have been accepted), code
    (TransportError(Stage.CONNECT, "TimeoutError", timed_out=True), False, "connect"),
    (TransportError(Stage.CONNECT, "ConnectionRefusedError"), False, "connect"),
    (TransportError(Stage.CONNECT, "gaierror"), False, "connect"),
    (TransportError(Stage.CONNECT, "SSLCertVerificationError"), False, "connect"),
    (TransportError(Stage.EXCHANGE, "SSLError"), True, "connection"),
    (TransportError(Stage.EXCHANGE, "TimeoutError", timed_out=True), True, "timeout"),
    (TransportError(Stage.EXCHANGE, "ConnectionResetError"), True, "connection"),
    (TransportError(Stage.EXCHANGE, "RemoteDisconnected"), True, "connection"),
    (TransportError(Stage.EXCHANGE, "IncompleteRead"), True, "connection"),
]


@pytest.mark.parametrize(
    ("exc", "ambiguous", "code"),
    TRANSPORT,
    ids=[f"{e.stage}-{e.kind}" for e, *_ in TRANSPORT],
)
def test_transport_failures_retry_only_when_nothing_left(
    exc: TransportError, ambiguous: bool, code: str
) -> None:
    error = classify_transport_error(exc)

    assert error.ambiguous is ambiguous
    assert error.permanent is False
    assert error.code == code
    assert exc.kind in error.detail
    # Only the certainly-unsent are offered a retry delay; the rest are reconciled instead.
    assert (error.retry_after is not None) is (not ambiguous)


def test_invalid_base_url_is_a_configuration_error() -> None:
    error = classify_transport_error(TransportError(Stage.URL, "unsupported URL"))
    assert error.permanent and not error.ambiguous


DELIVERY = [
    # error_code, status, action, effect
    ("30003", "undelivered", FailureAction.RETRY_ONCE_LATER, None),
    ("30008", "failed", FailureAction.RETRY_ONCE_LATER, None),
    ("30500", "failed", FailureAction.RETRY_ONCE_LATER, None),
    ("30005", "undelivered", FailureAction.SUPPRESS, Effect.SUPPRESS_ADDRESS),
    ("30006", "undelivered", FailureAction.SUPPRESS, Effect.SUPPRESS_ADDRESS),
    ("21610", "failed", FailureAction.REVOKE_CONSENT, Effect.REVOKE_SMS_CONSENT),
    ("30007", "undelivered", FailureAction.INVESTIGATE, None),
    ("30034", "failed", FailureAction.INVESTIGATE, None),
    ("30036", "failed", FailureAction.NONE, None),
    ("39999", "undelivered", FailureAction.INVESTIGATE, None),  # unlisted: never retried blindly
    (None, "failed", FailureAction.INVESTIGATE, None),
    ("0", "undelivered", FailureAction.INVESTIGATE, None),
    (None, "delivered", FailureAction.NONE, None),
    ("30003", "sent", FailureAction.NONE, None),  # a code on a non-failure is informational
    (None, "queued", FailureAction.NONE, None),
]


@pytest.mark.parametrize(("error_code", "status", "action", "effect"), DELIVERY)
def test_delivery_failures_are_classified(
    error_code: str | None, status: str, action: FailureAction, effect: Effect | None
) -> None:
    failure = classify_delivery_failure(error_code, status)

    assert failure.action is action
    assert failure.effect is effect
    assert (failure.retry_after is not None) is (action is FailureAction.RETRY_ONCE_LATER)


NOW = datetime(2025, 3, 9, 17, 0, tzinfo=UTC)

VALIDITY = [
    # window end, not_after, seconds
    (NOW + timedelta(hours=3), None, 3 * 3600),
    (NOW + timedelta(seconds=90.9), None, 90),  # rounded down: never past the window
    (NOW + timedelta(hours=20), None, 36_000),  # Twilio's maximum
    (NOW + timedelta(seconds=0.5), None, 1),  # Twilio's minimum
    (NOW - timedelta(minutes=5), None, 1),  # already closed
    (NOW + timedelta(hours=3), NOW + timedelta(minutes=30), 1800),  # expiry comes first
    (NOW + timedelta(minutes=10), NOW + timedelta(hours=1), 600),  # window comes first
]


@pytest.mark.parametrize(("window_end", "not_after", "seconds"), VALIDITY)
def test_validity_period_ends_with_the_allowed_window(
    window_end: datetime, not_after: datetime | None, seconds: int
) -> None:
    assert validity_seconds(NOW, window_end, not_after) == seconds


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("", None),
        (None, None),
        ("-1", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("nan", None),
    ],
)
def test_retry_after_header_parsing(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds
