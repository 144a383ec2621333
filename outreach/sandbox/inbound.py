"""A fake phone texting the clinic: Twilio's keyword handling, then a signed inbound webhook."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from twilio.request_validator import RequestValidator

from outreach.sandbox.callbacks import CALLBACK_TIMEOUT, signed_headers
from outreach.sandbox.formats import API_VERSION, AUTO_REPLIES, E164, keyword_of
from outreach.sandbox.state import SandboxState
from outreach.tls import shared_context

INBOUND_PATH = "/webhooks/twilio/sms"


@dataclass(frozen=True)
class ReplyOutcome:
    sid: str
    webhook_url: str
    webhook_status: int | None  # the app's HTTP status; None when it could not be reached
    error: str | None
    keyword: str | None  # STOP / START / HELP when the body was one of Twilio's keywords
    auto_reply: str | None  # the text Twilio itself sent back, if any

    def to_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "webhook_url": self.webhook_url,
            "webhook_status": self.webhook_status,
            "error": self.error,
            "keyword": self.keyword,
            "auto_reply": self.auto_reply,
        }


class InboundSender:
    def __init__(
        self,
        state: SandboxState,
        *,
        public_base_url: str,
        clinic_number: str,
        auth_token: str,
        client: httpx.Client | None = None,
    ) -> None:
        self._state = state
        self.webhook_url = public_base_url.rstrip("/") + INBOUND_PATH
        self.clinic_number = clinic_number
        self._validator = RequestValidator(auth_token)
        self._client = client or httpx.Client(timeout=CALLBACK_TIMEOUT, verify=shared_context())

    def close(self) -> None:
        self._client.close()

    def reply(self, number: str, body: str) -> ReplyOutcome:
        """Deliver one text from ``number`` to the clinic, as Twilio would. Blocking (HTTP)."""
        if not E164.match(number):
            raise ValueError("number must be an E.164 phone number such as +14155550100")
        state = self._state
        record = state.record_message(
            direction="inbound", to=self.clinic_number, from_=number, body=body, status="received"
        )
        # Twilio applies its own opt-out handling first, then still forwards the message.
        keyword = keyword_of(body)
        auto_reply: str | None = None
        if keyword == "STOP":
            state.set_opted_out(number, True)
        elif keyword == "START":
            state.set_opted_out(number, False)
        if keyword and state.config.auto_reply:
            auto_reply = AUTO_REPLIES[keyword]
            state.record_message(
                direction="outbound-reply", to=number, from_=self.clinic_number, body=auto_reply,
                status="delivered",
            )
        params = {
            "MessageSid": record.sid,
            "SmsSid": record.sid,
            "SmsMessageSid": record.sid,
            "AccountSid": record.account_sid,
            "From": number,
            "To": self.clinic_number,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": str(record.num_segments),
            "SmsStatus": "received",
            "ApiVersion": API_VERSION,
            "FromCountry": "US",
            "ToCountry": "US",
        }
        if keyword:
            params["OptOutType"] = keyword
        headers = signed_headers(self._validator, self.webhook_url, params, uuid.uuid4().hex)
        status: int | None = None
        error: str | None = None
        # Twilio retries once when the connection fails; the idempotency token stays the same.
        for _attempt in range(2):
            try:
                response = self._client.post(self.webhook_url, data=params, headers=headers)
            except httpx.HTTPError as exc:
                error = type(exc).__name__
                continue
            status, error = response.status_code, None
            break
        with state.lock:
            record.webhook_status = status
        return ReplyOutcome(record.sid, self.webhook_url, status, error, keyword, auto_reply)
