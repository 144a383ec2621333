"""SMS through Twilio's Messages API, with the real ``twilio`` client injected.

The client is a constructor argument so tests and the sandbox only change where it points
(``client.api.base_url``), never how it behaves. Errors are classified in
``classify_twilio``; this module only translates between our types and the SDK's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.rest import Client

from outreach.channels.base import DeliveryError, Outgoing, SendResult
from outreach.channels.twilio.errors import TransportError, classify_rest_error, classify_transport_error
from outreach.channels.twilio.http import PooledHttpClient
from outreach.config import Settings

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
# Query parameter carrying our correlation id in the StatusCallback URL.
CORRELATION_PARAM = "c"
# Clock difference we tolerate between us and Twilio when matching "sent since the attempt".
RECONCILE_CLOCK_SKEW = timedelta(minutes=2)
# How many recent messages to that number we look through when reconciling.
RECONCILE_SCAN_LIMIT = 50


def status_callback_url(public_base_url: str, correlation_id: str) -> str:
    """The per-message StatusCallback: links callbacks to our row even if the create answer is lost."""
    return (
        public_base_url.rstrip("/")
        + STATUS_CALLBACK_PATH
        + f"?{CORRELATION_PARAM}={quote(correlation_id, safe='')}"
    )


def _segments(value: object) -> int | None:
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None


def _result(message: Any) -> SendResult:
    price = message.price
    return SendResult(
        provider_id=str(message.sid),
        status=str(message.status),
        segments=_segments(message.num_segments),
        price=str(price) if price is not None else None,
    )


class TwilioSms:
    channel = "sms"
    # Twilio can be asked whether an ambiguous send arrived (see find_accepted).
    can_reconcile = True

    def __init__(
        self,
        client: Client,
        *,
        public_base_url: str,
        messaging_service_sid: str = "",
        from_number: str = "",
    ) -> None:
        if not messaging_service_sid and not from_number:
            raise ValueError(
                "Twilio needs a sender: set OUTREACH_TWILIO_MESSAGING_SERVICE_SID or OUTREACH_TWILIO_FROM"
            )
        self._client = client
        self._public_base_url = public_base_url
        self._messaging_service_sid = messaging_service_sid
        self._from = from_number

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioSms:
        return cls(
            make_client(settings),
            public_base_url=settings.public_base_url,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            from_number=settings.twilio_from,
        )

    @property
    def sender(self) -> str:
        """The rate limiter's key: Twilio limits throughput per sender (number or service)."""
        return self._messaging_service_sid or self._from

    def send(self, outgoing: Outgoing) -> SendResult:
        params: dict[str, Any] = {
            "to": outgoing.to,
            "body": outgoing.body,
            "status_callback": status_callback_url(self._public_base_url, outgoing.correlation_id),
        }
        # A Messaging Service picks the sender from its pool and applies Advanced Opt-Out.
        if self._messaging_service_sid:
            params["messaging_service_sid"] = self._messaging_service_sid
        else:
            params["from_"] = self._from
        if outgoing.validity_period is not None:
            params["validity_period"] = outgoing.validity_period
        try:
            message = self._client.messages.create(**params)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._rest_error(exc) from None
        except TransportError as exc:
            raise classify_transport_error(exc) from None
        except TwilioException as exc:
            # Raised by the SDK itself, before any request (e.g. missing credentials).
            raise DeliveryError(
                f"Twilio client error before sending ({type(exc).__name__})", permanent=True, code="client"
            ) from None
        return _result(message)

    def find_accepted(
        self, to: str, since: datetime, correlation_id: str, *, body: str | None = None
    ) -> SendResult | None:
        """Twilio's record of an ambiguous send, or None if it has none.

        The Message resource does not echo our StatusCallback URL, so the correlation id
        cannot be matched here (the callback path links it when Twilio calls us). We match
        outbound messages to ``to`` from our sender created since the attempt (less a clock
        margin), and by ``body`` when given. Without a body, two such messages in the window
        cannot be told apart: we then raise an ambiguous ``DeliveryError`` rather than guess.
        Two listings are merged: one filtered by DateSent (the documented reconciliation
        query) and the most recent messages to that number, because a message still queued
        at Twilio has no DateSent yet and a DateSent filter may hide it.
        """
        # The SDK formats the DateSent filter with strftime, ignoring the zone: convert first.
        since_utc = (since - RECONCILE_CLOCK_SKEW).astimezone(UTC)
        try:
            found = {
                m.sid: m
                for m in self._client.messages.list(
                    to=to, date_sent_after=since_utc, limit=RECONCILE_SCAN_LIMIT
                )
            }
            for m in self._client.messages.list(to=to, limit=RECONCILE_SCAN_LIMIT):
                found.setdefault(m.sid, m)
        except (TwilioRestException, TwilioServiceException) as exc:
            status = int(getattr(exc, "status", 0) or 0)
            raise DeliveryError(
                f"could not list Twilio messages to reconcile (HTTP {status})",
                permanent=False,
                code=str(getattr(exc, "code", None) or status),
            ) from None
        except TransportError as exc:
            # Listing is read-only, so any transport failure just means "ask again later".
            raise DeliveryError(
                f"could not reach Twilio to reconcile ({exc.kind})", permanent=False, code="connect"
            ) from None
        candidates = [m for m in found.values() if self._is_ours(m, since_utc, body)]
        if not candidates:
            return None
        if body is None and len(candidates) > 1:
            raise DeliveryError(
                f"{len(candidates)} messages to this number since the attempt; cannot tell which is ours",
                permanent=False,
                ambiguous=True,
                code="reconcile-multi",
            )
        candidates.sort(key=lambda m: m.date_created)
        return _result(candidates[0])

    def _is_ours(self, message: Any, since: datetime, body: str | None) -> bool:
        created: datetime | None = message.date_created
        if created is None or created < since:
            return False
        if str(message.direction or "").startswith("inbound"):
            return False
        if self._messaging_service_sid:
            if message.messaging_service_sid != self._messaging_service_sid:
                return False
        elif message.from_ != self._from:
            return False
        return body is None or message.body == body

    def _rest_error(self, exc: TwilioRestException | TwilioServiceException) -> DeliveryError:
        # Read status and code only: the exception's message and URI are Twilio's text and may
        # quote the number, so they never reach our logs or the attempt row.
        status = int(exc.status)
        raw_code = exc.code
        code = int(raw_code) if raw_code is not None and str(raw_code).isdigit() else None
        http_client = self._client.http_client
        retry_after = http_client.last_retry_after if isinstance(http_client, PooledHttpClient) else None
        return classify_rest_error(status, code, retry_after)


def make_client(settings: Settings) -> Client:
    """A Twilio client with timeouts, a keep-alive session, and the configured API base URL."""
    client = Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        http_client=PooledHttpClient(timeout=settings.twilio_timeout_seconds),
        # Ignore TWILIO_REGION / TWILIO_EDGE from the process environment: either rewrites every
        # host, the sandbox's too. (An empty mapping would fall back to os.environ.)
        environment={"TWILIO_EDGE": "", "TWILIO_REGION": ""},
    )
    client.api.base_url = settings.twilio_api_base_url.rstrip("/")
    return client
