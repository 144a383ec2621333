"""The send-time view of the scheduling rules: the policy for one message and the frequency-cap
deferral. The rules live in ``outreach.scheduling`` (pure), ``outreach.closures`` (the clinic's
calendar and a campaign's policy) and ``outreach.delivery.caps`` (the frequency cap)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from outreach import scheduling
from outreach.closures import campaign_policy, load_closures
from outreach.config import Settings
from outreach.delivery import caps
from outreach.models import Campaign, Message


def policy_for(session: Session, settings: Settings, campaign: Campaign | None) -> scheduling.SendPolicy:
    return campaign_policy(settings, campaign, load_closures(session))


def cap_deferral(
    policy: scheduling.SendPolicy,
    settings: Settings,
    message: Message,
    zone: ZoneInfo,
    recent: Iterable[tuple[int, datetime]],
    now: datetime,
) -> datetime | None:
    """When a capped message may go instead (the next allowed local day), or None if it may go now."""
    if caps.cap_violation(settings, message, zone, recent, now) is None:
        return None
    tomorrow = datetime.combine(now.astimezone(zone).date() + timedelta(days=1), time(0), tzinfo=zone)
    return policy.next_opening(tomorrow, zone)
