"""A provider fake for service-level send tests (the real ones are tested against real servers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from outreach.channels import DeliveryError, Outgoing, SendResult
from outreach.config import Settings
from outreach.delivery.ratelimit import Reservation
from outreach.delivery.send import NoLimit, Services


@dataclass
class FakeProvider:
    channel: str = "sms"
    can_reconcile: bool = True
    sent: list[Outgoing] = field(default_factory=list)
    # Errors to raise on the next sends, in order; None means accept.
    script: list[DeliveryError | None] = field(default_factory=list)
    # What the provider "has" for reconciliation: correlation ids it accepted.
    accepted_ids: set[str] = field(default_factory=set)
    before_send: Callable[[Outgoing], None] | None = None

    def send(self, outgoing: Outgoing) -> SendResult:
        if self.before_send is not None:
            self.before_send(outgoing)
        error = self.script.pop(0) if self.script else None
        if error is not None:
            if error.ambiguous:
                self.accepted_ids.add(outgoing.correlation_id)  # it did arrive, we just never heard
            raise error
        self.sent.append(outgoing)
        self.accepted_ids.add(outgoing.correlation_id)
        return SendResult(provider_id=f"SM{len(self.sent):032x}", status="queued", segments=1)

    def find_accepted(
        self, to: str, since: datetime, correlation_id: str, *, body: str | None = None
    ) -> SendResult | None:
        if correlation_id in self.accepted_ids:
            return SendResult(provider_id="SM" + "e" * 32, status="sent")
        return None


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class LimiterThatRuns(NoLimit):
    """A limiter with no limit that first runs ``action``: the rate-limit step sits between a
    send's prepare and its provider call, so this lands a change exactly there."""

    action: Callable[[], None]

    def acquire_many(self, *args: Any, **kwargs: Any) -> Reservation:
        self.action()
        return super().acquire_many(*args, **kwargs)


def fake_services(
    settings: Settings, factory: sessionmaker[Session], provider: FakeProvider, now: datetime
) -> Services:
    """Send-path collaborators for a service test: ``provider`` for SMS, an email fake, no rate
    limit, the clock fixed at ``now`` and no real sleeping."""
    return Services(
        settings=settings,
        session_factory=factory,
        providers={"sms": provider, "email": FakeProvider(channel="email", can_reconcile=False)},
        limiter=NoLimit(),
        clock=FakeClock(now),
        sleep=lambda _s: None,
    )
