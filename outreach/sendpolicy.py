"""The send-time view of the scheduling rules: the policy for one message (global window,
the campaign's narrower one, weekends, closure days) and the frequency-cap deferral. The
rules themselves live in ``outreach.scheduling`` (pure) and ``outreach.caps``."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import caps, scheduling
from outreach.config import Settings
from outreach.models import Campaign, Closure, Message


def policy_for(session: Session, settings: Settings, campaign: Campaign | None) -> scheduling.SendPolicy:
    window = scheduling.Window(settings.send_window_start, settings.send_window_end)
    no_weekends = settings.no_weekends
    if campaign is not None:
        if campaign.window_start and campaign.window_end:
            window = window.narrowed_to(
                scheduling.Window(
                    scheduling.parse_clock(campaign.window_start), scheduling.parse_clock(campaign.window_end)
                )
            )
        if campaign.no_weekends is not None:
            no_weekends = campaign.no_weekends
    closures = frozenset(date.fromisoformat(day) for day in session.scalars(select(Closure.day)))
    return scheduling.SendPolicy(window, no_weekends, closures)


def cap_deferral(
    policy: scheduling.SendPolicy,
    session: Session,
    settings: Settings,
    message: Message,
    zone: ZoneInfo,
    now: datetime,
) -> datetime | None:
    """When a capped message may go instead (the next allowed local day), or None if it may go now."""
    if caps.cap_violation(session, settings, message, now) is None:
        return None
    tomorrow = datetime.combine(now.astimezone(zone).date() + timedelta(days=1), time(0), tzinfo=zone)
    return policy.next_opening(tomorrow, zone)
