"""The clinic's closure calendar (``templates/closures.yaml``) and the send policy built from it.

Closure days are dates. They are matched against the recipient's local date: a campaign
message that would go out on a closed day moves to the next open day's window. When a sync
adds a closure, scheduled campaign messages already on that day move at once (dispatch also
re-checks at send time, so nothing slips through between syncs).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.errors import OutreachError
from outreach.models import Campaign, Closure, Contact, Enrollment, Message, MessageKind, MessageState
from outreach.scheduling import SendPolicy, Window, local_day_of, parse_clock


class ClosureFileError(OutreachError):
    pass


def closures_file(settings: Settings) -> Path:
    return Path(settings.templates_dir) / "closures.yaml"


def parse_closures(path: Path) -> dict[str, str]:
    """``{"YYYY-MM-DD": reason}`` from the file; a missing file means no closures."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise ClosureFileError(f"{path}: not valid YAML") from None
    entries = data.get("closures") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ClosureFileError(f"{path}: closures: must be a list of {{day: YYYY-MM-DD, reason: ...}}")
    days: dict[str, str] = {}
    for i, entry in enumerate(entries):
        raw = entry.get("day") if isinstance(entry, dict) else None
        try:
            day = raw if isinstance(raw, date) else date.fromisoformat(str(raw))
        except ValueError:
            raise ClosureFileError(f"{path}: closures[{i}].day: expected a date like 2026-12-25") from None
        reason = entry.get("reason", "") if isinstance(entry, dict) else ""
        days[day.isoformat()] = str(reason or "")[:200]
    return days


def load_closures(session: Session) -> frozenset[date]:
    return frozenset(date.fromisoformat(day) for day in session.scalars(select(Closure.day)))


def campaign_policy(settings: Settings, campaign: Campaign | None, closures: frozenset[date]) -> SendPolicy:
    """Settings' window narrowed by the campaign's, its weekend rule, and the closure days."""
    window = Window(settings.send_window_start, settings.send_window_end)
    no_weekends = settings.no_weekends
    if campaign is not None:
        if campaign.window_start and campaign.window_end:
            window = window.narrowed_to(
                Window(parse_clock(campaign.window_start), parse_clock(campaign.window_end))
            )
        if campaign.no_weekends is not None:
            no_weekends = campaign.no_weekends
    return SendPolicy(window, no_weekends, closures)


def sync_closures(session: Session, settings: Settings, now: datetime) -> tuple[list[str], list[str], int]:
    """Make the table match the file. Returns (days added, days removed, messages moved)."""
    wanted = parse_closures(closures_file(settings))
    current = {c.day: c for c in session.scalars(select(Closure))}
    added = sorted(set(wanted) - set(current))
    removed = sorted(set(current) - set(wanted))
    for day in added:
        session.add(Closure(day=day, reason=wanted[day]))
    for day, row in current.items():
        if day in wanted and row.reason != wanted[day]:
            row.reason = wanted[day]
    if removed:
        session.execute(delete(Closure).where(Closure.day.in_(removed)))
    session.flush()
    moved = (
        _move_off_closed_days(session, settings, [date.fromisoformat(d) for d in added], now) if added else 0
    )
    return added, removed, moved


def _move_off_closed_days(session: Session, settings: Settings, days: list[date], now: datetime) -> int:
    closures = load_closures(session)
    campaigns = {c.id: c for c in session.scalars(select(Campaign))}
    policies: dict[int, SendPolicy] = {}
    moved = 0
    for day in days:
        # Local day `day` is somewhere in this UTC range for every zone on Earth.
        lower = datetime.combine(day - timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo)
        rows = session.execute(
            select(Message.id, Message.due_at, Contact.timezone, Enrollment.campaign_id)
            .join(Contact, Contact.id == Message.contact_id)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(
                Message.state == str(MessageState.SCHEDULED),
                Message.kind == str(MessageKind.AUTOMATED),
                Message.due_at >= lower,
                Message.due_at < lower + timedelta(days=3),
            )
        ).all()
        for message_id, due_at, tz, campaign_id in rows:
            zone = ZoneInfo(tz)
            if local_day_of(due_at, zone) != day:
                continue
            policy = policies.get(campaign_id) or campaign_policy(
                settings, campaigns.get(campaign_id), closures
            )
            policies[campaign_id] = policy
            new_due = policy.next_opening(due_at, zone)
            if new_due != due_at:
                result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                    update(Message)
                    .where(Message.id == message_id, Message.state == str(MessageState.SCHEDULED))
                    .values(due_at=new_due, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                moved += result.rowcount
    return moved
