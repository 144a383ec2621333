"""The frequency cap on automated education and marketing messages, backed by the outbox.

Rule (defaults ``cap_per_day=1``, ``cap_per_week=3``): per contact, across all campaigns,
at most ``cap_per_day`` automated education/marketing messages per local day and
``cap_per_week`` in any 7 consecutive local days. Care messages (reminders, check-ins) and
system/conversational messages are not counted and not capped here.

Which messages count:

* when **materialising** a schedule: the contact's messages that are going or have gone out —
  ``scheduled``, ``queued``, ``sending``, ``sent``, ``delivered``, ``unknown`` — on the local
  day of ``sent_at`` (or ``due_at`` while unsent). Every 7-day run containing the candidate
  day is checked, future messages included;
* at **send time** (``cap_violation``): only messages that actually left or may have left —
  ``sending``, ``sent``, ``delivered``, ``unknown`` — on the local day of ``sent_at`` (or the
  moment they started sending), looking back over the 7 local days ending today. Scheduled
  and queued messages are not counted there, so two messages claimed together do not block
  each other; the one that sends second sees the first (the send holds the contact lock).

**Care first** (the daily limit over all automated messages, ``care_cap_per_day``, default 2):
at most that many automated messages — care, education and marketing together — to one
patient per local day, and a visit's reminders are never dropped or moved for education or
marketing. When the limit binds, the education/marketing message moves to the next allowed
day. The same rule is applied:

* when planning reminders (``appointments.materialise``): the daily limit counts the
  patient's care messages and the education/marketing messages that already left; pending
  ones that no longer fit move (``make_room``);
* when planning a campaign (enrollment): a day whose care messages and counted
  education/marketing messages already fill the limit is closed to the campaign
  (``care_first_policy``);
* at send time (``care_first``): an education/marketing message waits for the next allowed
  day when what left today plus the care messages still due today fill the limit; a care
  message is skipped only when care messages alone already filled the day (``day_limit_reason``,
  the words planning uses).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.models import CAP_COUNTED_STATES, Category, Message, MessageKind, MessageState
from outreach.outbox.idsets import IdSets
from outreach.scheduling import (
    MAX_SEARCH_DAYS,
    FrequencyCap,
    NoOpening,
    SendPolicy,
    cap_allows_day,
    count_days,
    local_day_of,
    to_utc,
)

CAPPED_CATEGORIES = frozenset({str(Category.EDUCATION), str(Category.MARKETING)})
COUNTED_WHEN_PLANNING = frozenset(str(s) for s in CAP_COUNTED_STATES)
PLANNING_CATEGORIES = CAPPED_CATEGORIES | {str(Category.CARE)}
COUNTED_WHEN_SENDING = frozenset(
    str(s) for s in (MessageState.SENDING, MessageState.SENT, MessageState.DELIVERED, MessageState.UNKNOWN)
)
# The prefix of every reason a reminder is skipped for by a combining rule: such a row comes back
# by itself when the reason goes away (``appointments.materialise``).
COMBINED = "combined: "


def cap_of(settings: Settings) -> FrequencyCap:
    return FrequencyCap(settings.cap_per_day, settings.cap_per_week)


def is_capped(kind: str, category: str) -> bool:
    return kind == MessageKind.AUTOMATED and category in CAPPED_CATEGORIES


@dataclass(frozen=True)
class PlanningHistory:
    """Per contact, the instants (sent, else due) of the automated messages planning counts:
    ``capped``, education and marketing (the frequency cap); ``care``, care messages (the
    daily limit they share with them)."""

    capped: dict[int, list[datetime]] = field(default_factory=dict)
    care: dict[int, list[datetime]] = field(default_factory=dict)


def planning_history(session: Session, contact_ids: Sequence[int]) -> PlanningHistory:
    """Both kinds of history for planning new messages (see module doc), in one pass over the
    contacts' automated messages in the states planning counts."""
    history = PlanningHistory()
    instant = func.coalesce(Message.sent_at, Message.due_at)
    for _id, contact_id, category, at in _automated(
        session, contact_ids, PLANNING_CATEGORIES, COUNTED_WHEN_PLANNING, instant
    ):
        found = history.care if category == Category.CARE else history.capped
        found.setdefault(contact_id, []).append(at)
    return history


def recent_sends(
    session: Session, contact_ids: Sequence[int], now: datetime
) -> dict[int, list[tuple[int, datetime]]]:
    """Per contact, (message id, instant) of the counted messages that left or may have left in
    the last 8 days: what ``cap_violation`` needs for a whole batch of sends, in one query."""
    instant = func.coalesce(Message.sent_at, Message.updated_at)
    since = instant >= now - timedelta(days=8)
    found: dict[int, list[tuple[int, datetime]]] = {}
    for message_id, contact_id, _category, at in _automated(
        session, contact_ids, CAPPED_CATEGORIES, COUNTED_WHEN_SENDING, instant, since
    ):
        found.setdefault(contact_id, []).append((message_id, at))
    return found


def _automated(
    session: Session,
    contact_ids: Sequence[int],
    categories: Iterable[str],
    states: Iterable[str],
    instant: ColumnElement[datetime],
    *where: ColumnElement[bool],
) -> Iterator[tuple[int, int, str, datetime]]:
    """(message id, contact id, category, ``instant``) of the contacts' automated messages in
    ``categories`` and ``states``."""
    sets = IdSets(session)
    for chunk in sets.batches(contact_ids):
        rows = session.execute(
            select(Message.id, Message.contact_id, Message.category, instant).where(
                sets.among(Message.contact_id, chunk),
                Message.kind == str(MessageKind.AUTOMATED),
                Message.category.in_(sorted(categories)),
                Message.state.in_(sorted(states)),
                *where,
            )
        )
        for message_id, contact_id, category, at in rows:
            if contact_id is not None:
                yield message_id, contact_id, category, _aware(at)


def _aware(value: datetime) -> datetime:
    # coalesce() loses the column type on SQLite, so the value comes back naive (stored as UTC).
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def cap_violation(
    settings: Settings,
    message: Message,
    zone: ZoneInfo,
    recent: Iterable[tuple[int, datetime]],
    now: datetime,
) -> str | None:
    """Why sending ``message`` now would break the frequency cap, or None if it may go.

    ``recent`` is the contact's entry of ``recent_sends`` (the message itself is ignored in
    it). Only automated education/marketing messages are capped. The reason names counts and
    limits, never patient data.
    """
    if not is_capped(message.kind, message.category) or message.contact_id is None:
        return None
    cap = cap_of(settings)
    taken = count_days((at for message_id, at in recent if message_id != message.id), zone)
    today = local_day_of(now, zone)
    if taken[today] >= cap.per_day:
        return (
            f"frequency cap: {taken[today]} education/marketing message(s) already sent today "
            f"(limit {cap.per_day} per day)"
        )
    if not cap_allows_day(today, taken, cap, look_ahead=False):
        week = sum(taken[today - timedelta(days=i)] for i in range(7))
        return (
            f"frequency cap: {week} education/marketing message(s) sent in the last 7 days "
            f"(limit {cap.per_week})"
        )
    return None


def cap_deferral(
    policy: SendPolicy,
    settings: Settings,
    message: Message,
    zone: ZoneInfo,
    recent: Iterable[tuple[int, datetime]],
    now: datetime,
) -> datetime | None:
    """When a capped message may go instead (the next allowed local day), or None if it may go now."""
    if cap_violation(settings, message, zone, recent, now) is None:
        return None
    tomorrow = datetime.combine(now.astimezone(zone).date() + timedelta(days=1), time(0), tzinfo=zone)
    return policy.next_opening(tomorrow, zone)


# ---------------------------------------------------------------- care first (daily limit)


def day_limit_reason(limit: int) -> str:
    return f"{COMBINED}at most {limit} automated messages per day to one patient"


@dataclass(frozen=True)
class DayLoad:
    """One automated message of a patient near today, for the send-time daily limit."""

    message_id: int
    care: bool
    at: datetime  # when it left (or started sending); its due time while pending
    left: bool  # sending, sent, delivered or unknown: it counts whatever happens next


def day_loads(session: Session, contact_ids: Sequence[int], now: datetime) -> dict[int, list[DayLoad]]:
    """Per contact, the automated messages that left in the last two days and the care
    messages still due within the next two: what ``care_first`` needs, in one query per chunk."""
    sets = IdSets(session)
    found: dict[int, list[DayLoad]] = {}
    left_at = func.coalesce(Message.sent_at, Message.updated_at)
    left = Message.state.in_(sorted(COUNTED_WHEN_SENDING)) & (left_at >= now - timedelta(days=2))
    pending_care = (
        Message.state.in_([str(MessageState.SCHEDULED), str(MessageState.QUEUED)])
        & (Message.category == str(Category.CARE))
        & (Message.due_at <= now + timedelta(days=2))
    )
    columns = (Message.id, Message.contact_id, Message.category, Message.state, left_at, Message.due_at)
    for chunk in sets.batches(contact_ids):
        rows = session.execute(
            select(*columns).where(
                sets.among(Message.contact_id, chunk),
                Message.kind == str(MessageKind.AUTOMATED),
                or_(left, pending_care),
            )
        )
        for message_id, contact_id, category, state, at, due_at in rows:
            if contact_id is None:
                continue
            gone = state in COUNTED_WHEN_SENDING
            found.setdefault(contact_id, []).append(
                DayLoad(message_id, category == Category.CARE, _aware(at if gone else due_at), gone)
            )
    return found


@dataclass(frozen=True)
class CareFirst:
    """The daily limit's verdict at send time: hold until ``until``, or skip (``until`` None)."""

    reason: str
    until: datetime | None = None


def care_first(
    policy: SendPolicy,
    settings: Settings,
    message: Message,
    zone: ZoneInfo,
    loads: Iterable[DayLoad],
    now: datetime,
) -> CareFirst | None:
    """The send-time daily limit (module doc), or None when ``message`` may go now."""
    if message.kind != MessageKind.AUTOMATED:
        return None
    limit = settings.care_cap_per_day
    today = local_day_of(now, zone)
    mine = [x for x in loads if x.message_id != message.id and local_day_of(x.at, zone) == today]
    if message.category == Category.CARE:
        care_left = sum(1 for x in mine if x.care and x.left)
        return CareFirst(day_limit_reason(limit)) if care_left >= limit else None
    if not is_capped(message.kind, message.category):
        return None
    # What left today, plus the care messages still to go today: those come first.
    taken = sum(1 for x in mine if x.left or x.care)
    if taken < limit:
        return None
    tomorrow = to_utc(today + timedelta(days=1), time(0), zone)
    return CareFirst(
        f"care first: {taken} automated message(s) to this patient today, visit reminders included "
        f"(limit {limit} per day); moved to the next allowed day",
        policy.next_opening(tomorrow, zone),
    )


def full_days(care: Counter[date], capped: Counter[date], limit: int) -> frozenset[date]:
    """Local days on which care messages and counted education/marketing fill the daily limit."""
    return frozenset(day for day in set(care) | set(capped) if care[day] + capped[day] >= limit)


def care_first_policy(
    policy: SendPolicy,
    settings: Settings,
    zone: ZoneInfo,
    care: Iterable[datetime],
    capped: Iterable[datetime],
) -> SendPolicy:
    """A campaign's send policy for one patient, with the days the daily limit fills closed."""
    full = full_days(count_days(care, zone), count_days(capped, zone), settings.care_cap_per_day)
    return replace(policy, closures=policy.closures | full) if full else policy


@dataclass(frozen=True)
class Pending:
    """An education/marketing message not claimed yet, which planning may move."""

    message_id: int
    due_at: datetime
    policy: SendPolicy


def make_room(
    pending: Sequence[Pending],
    settings: Settings,
    zone: ZoneInfo,
    care: Counter[date],
    capped_left: Counter[date],
) -> dict[int, datetime]:
    """Care first at planning time: the new due time of each pending education/marketing
    message that no longer fits its day (message id -> due), the latest of a day moving first.

    ``care`` counts the patient's care messages per local day, ``capped_left`` the
    education/marketing messages that already left.
    """
    limit = settings.care_cap_per_day
    cap = cap_of(settings)
    capped = Counter(capped_left)
    staying: list[Pending] = []
    moving: list[Pending] = []
    for item in sorted(pending, key=lambda p: (p.due_at, p.message_id)):
        day = local_day_of(item.due_at, zone)
        if care[day] + capped[day] < limit:
            capped[day] += 1
            staying.append(item)
        else:
            moving.append(item)
    moved: dict[int, datetime] = {}
    for item in moving:
        due = _next_room(item, zone, cap, limit, care, capped)
        capped[local_day_of(due, zone)] += 1
        moved[item.message_id] = due
    return moved


def _next_room(
    item: Pending, zone: ZoneInfo, cap: FrequencyCap, limit: int, care: Counter[date], capped: Counter[date]
) -> datetime:
    day = local_day_of(item.due_at, zone)
    for _ in range(MAX_SEARCH_DAYS):
        opening = item.policy.next_opening(to_utc(day + timedelta(days=1), time(0), zone), zone)
        day = local_day_of(opening, zone)
        if care[day] + capped[day] < limit and cap_allows_day(day, capped, cap):
            return opening
    raise NoOpening(f"no day under the daily limit within {MAX_SEARCH_DAYS} days")
