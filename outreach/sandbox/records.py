"""What the sandbox remembers about each message, opt-out and refused create."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from outreach.sandbox.formats import API_VERSION, DELIVERY_ERRORS, rfc2822


@dataclass
class StatusChange:
    status: str
    at: datetime
    error_code: int | None = None


@dataclass
class CallbackAttempt:
    status: str
    at: datetime
    http_status: int | None
    error: str | None = None


@dataclass
class SmsRecord:
    seq: int
    sid: str
    account_sid: str
    direction: str  # outbound-api | outbound-reply | inbound
    to: str
    from_: str
    body: str
    status: str
    messaging_service_sid: str | None
    status_callback: str | None
    validity_period: int | None
    date_created: datetime
    accepted_monotonic: float
    date_sent: datetime | None = None
    date_updated: datetime | None = None
    error_code: int | None = None
    price: str | None = None
    num_segments: int = 1
    history: list[StatusChange] = field(default_factory=list)
    callbacks: list[CallbackAttempt] = field(default_factory=list)
    webhook_status: int | None = None  # inbound: the app's answer to our webhook

    @property
    def phone(self) -> str:
        """The fake phone's number in this conversation (the party that is not the clinic)."""
        return self.from_ if self.direction == "inbound" else self.to

    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def to_resource(self) -> dict[str, Any]:
        """The Message resource exactly as Twilio's API returns it."""
        uri = self.uri()
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated or self.date_created),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": DELIVERY_ERRORS.get(self.error_code) if self.error_code else None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(self.num_segments),
            "price": self.price,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": uri.removesuffix(".json") + "/Media.json",
                "feedback": uri.removesuffix(".json") + "/Feedback.json",
            },
            "to": self.to,
            "uri": uri,
        }

    def to_control(self) -> dict[str, Any]:
        """Everything the sandbox knows about the message, for tests and the phone page."""
        return {
            "sid": self.sid,
            "direction": self.direction,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status": self.status,
            "error_code": self.error_code,
            "num_segments": self.num_segments,
            "messaging_service_sid": self.messaging_service_sid,
            "status_callback": self.status_callback,
            "validity_period": self.validity_period,
            "accepted_at": self.date_created.isoformat(),
            "accepted_monotonic": self.accepted_monotonic,
            "history": [
                {"status": c.status, "at": c.at.isoformat(), "error_code": c.error_code}
                for c in self.history
            ],
            "callbacks": [
                {"status": a.status, "at": a.at.isoformat(), "http_status": a.http_status, "error": a.error}
                for a in self.callbacks
            ],
            "webhook_status": self.webhook_status,
        }


@dataclass
class Rejection:
    """A create the sandbox refused: evidence that the app tried (e.g. 21610 after a STOP)."""

    to: str | None
    code: int
    at: datetime
    monotonic: float

    def to_json(self) -> dict[str, Any]:
        return {"to": self.to, "code": self.code, "at": self.at.isoformat(), "monotonic": self.monotonic}


@dataclass
class OptOut:
    number: str
    at: datetime
    monotonic: float
