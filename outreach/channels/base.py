"""The protocol every provider adapter implements, and the one error type they raise.

Adapters classify provider errors themselves (tested as tables), so dispatch only reads
``permanent``, ``ambiguous``, ``retry_after`` and ``effect``; it never looks at a provider's
codes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. "text/calendar; method=PUBLISH"
    content: bytes


@dataclass(frozen=True)
class Outgoing:
    """One rendered message, ready for a provider. Built by dispatch at send time."""

    message_id: int
    channel: str  # "sms" | "email"
    category: str
    to: str  # E.164 phone or email address
    body: str  # SMS text, or the email's plain-text part
    # Opaque id for the per-message StatusCallback URL / Message-ID; carries no patient data.
    correlation_id: str
    subject: str | None = None
    html: str | None = None
    # Extra email headers (List-Unsubscribe, List-Unsubscribe-Post).
    headers: dict[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    # Seconds the provider may hold the message before giving up (Twilio ValidityPeriod).
    validity_period: int | None = None


@dataclass(frozen=True)
class SendResult:
    provider_id: str  # Twilio MessageSid, or the email's Message-ID
    status: str  # the provider's initial status: "queued", "accepted", "sent"
    segments: int | None = None
    price: str | None = None


class Effect(enum.StrEnum):
    """What a failure means for the contact, beyond this one message."""

    REVOKE_SMS_CONSENT = "revoke_sms_consent"  # Twilio 21610: the number replied STOP
    SUPPRESS_ADDRESS = "suppress_address"  # invalid or unreachable number / mailbox


class DeliveryError(Exception):
    """A send that did not succeed, classified by the adapter.

    - ``permanent``: retrying cannot help (invalid number, opted out, rejected by SMTP 5xx).
    - ``ambiguous``: the request may have been accepted (timeout after the request left);
      the message becomes ``unknown`` and is reconciled, never blindly resent.
    - ``retry_after``: for transient errors, a suggested minimum delay in seconds.
    ``detail`` must name the failure without patient data (no numbers, no addresses, no body).
    """

    def __init__(
        self,
        detail: str,
        *,
        permanent: bool,
        code: str | None = None,
        ambiguous: bool = False,
        retry_after: float | None = None,
        effect: Effect | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
        self.code = code
        self.ambiguous = ambiguous
        self.retry_after = retry_after
        self.effect = effect


class Provider(Protocol):
    channel: str
    # False when the provider keeps no record we can query (SMTP): an ambiguous send then
    # ends as failed-with-reason instead of being resent, because a resend may duplicate.
    can_reconcile: bool

    def send(self, outgoing: Outgoing) -> SendResult:
        """Hand one message to the provider or raise ``DeliveryError``."""
        ...

    def find_accepted(
        self, to: str, since: datetime, correlation_id: str, *, body: str | None = None
    ) -> SendResult | None:
        """Reconcile an ambiguous send: the provider's record of it, or None if it never arrived.

        ``body`` (what we sent) lets a provider that does not echo our correlation id tell our
        message apart from others to the same number in the same minutes.

        Raises ``DeliveryError`` when the provider cannot be asked (then we ask again later).
        """
        ...
