"""The send-time view of the scheduling rules: one object per message, built from settings, the
campaign's narrower window, and the clinic's closure days. The rules themselves live in
``outreach.scheduling`` (pure) and ``outreach.caps`` (the frequency cap); this only binds them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import caps, scheduling
from outreach.config import Settings
from outreach.models import Campaign, Closure, Message


@dataclass(frozen=True)
class SendPolicy:
    window: tuple[time, time]
    no_weekends: bool
    closures: frozenset[date]

    def allows(self, instant: datetime, zone: ZoneInfo) -> bool:
        return scheduling.is_allowed(
            instant, zone, self.window, no_weekends=self.no_weekends, closures=self.closures
        )

    def next_opening(self, instant: datetime, zone: ZoneInfo) -> datetime:
        return scheduling.next_allowed(
            instant, zone, self.window, no_weekends=self.no_weekends, closures=self.closures
        )

    def cap_deferral(
        self, session: Session, settings: Settings, message: Message, zone: ZoneInfo, now: datetime
    ) -> datetime | None:
        """When a capped message may go instead (the next allowed local day), or None if it may go now."""
        if caps.cap_violation(session, settings, message, now) is None:
            return None
        tomorrow = datetime.combine(now.astimezone(zone).date() + timedelta(days=1), time(0), tzinfo=zone)
        return self.next_opening(tomorrow, zone)


def policy_for(session: Session, settings: Settings, campaign: Campaign | None) -> SendPolicy:
    start, end = settings.send_window_start, settings.send_window_end
    if campaign is not None and campaign.window_start and campaign.window_end:
        # A campaign may narrow the global window, never widen it.
        start = max(start, time.fromisoformat(campaign.window_start))
        end = min(end, time.fromisoformat(campaign.window_end))
    closures = frozenset(date.fromisoformat(day) for day in session.scalars(select(Closure.day)))
    return SendPolicy((start, end), settings.no_weekends, closures)
