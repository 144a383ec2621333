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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.models import CAP_COUNTED_STATES, Category, Message, MessageKind, MessageState
from outreach.outbox.idsets import IdSets
from outreach.scheduling import FrequencyCap, SendPolicy, cap_allows_day, count_days, local_day_of

CAPPED_CATEGORIES = frozenset({str(Category.EDUCATION), str(Category.MARKETING)})
COUNTED_WHEN_PLANNING = frozenset(str(s) for s in CAP_COUNTED_STATES)
COUNTED_WHEN_SENDING = frozenset(
    str(s) for s in (MessageState.SENDING, MessageState.SENT, MessageState.DELIVERED, MessageState.UNKNOWN)
)
# Id lists are sent in chunks: SQLite and psycopg both cap bound parameters per statement.
CHUNK = 10_000


def cap_of(settings: Settings) -> FrequencyCap:
    return FrequencyCap(settings.cap_per_day, settings.cap_per_week)


def is_capped(kind: str, category: str) -> bool:
    return kind == MessageKind.AUTOMATED and category in CAPPED_CATEGORIES


def chunks(ids: Sequence[int], size: int = CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def planned_instants(
    session: Session, contact_ids: Sequence[int], *, exclude_message_ids: Iterable[int] = ()
) -> dict[int, list[datetime]]:
    """Per contact, the instants of counted messages, for planning new ones (see module doc)."""
    excluded = set(exclude_message_ids)
    instant = func.coalesce(Message.sent_at, Message.due_at)
    found: dict[int, list[datetime]] = {}
    for message_id, contact_id, at in _capped(session, contact_ids, COUNTED_WHEN_PLANNING, instant):
        if message_id not in excluded:
            found.setdefault(contact_id, []).append(at)
    return found


def recent_sends(
    session: Session, contact_ids: Sequence[int], now: datetime
) -> dict[int, list[tuple[int, datetime]]]:
    """Per contact, (message id, instant) of the counted messages that left or may have left in
    the last 8 days: what ``cap_violation`` needs for a whole batch of sends, in one query."""
    instant = func.coalesce(Message.sent_at, Message.updated_at)
    since = instant >= now - timedelta(days=8)
    found: dict[int, list[tuple[int, datetime]]] = {}
    for message_id, contact_id, at in _capped(session, contact_ids, COUNTED_WHEN_SENDING, instant, since):
        found.setdefault(contact_id, []).append((message_id, at))
    return found


def _capped(
    session: Session,
    contact_ids: Sequence[int],
    states: Iterable[str],
    instant: ColumnElement[datetime],
    *where: ColumnElement[bool],
) -> Iterator[tuple[int, int, datetime]]:
    """(message id, contact id, ``instant``) of the contacts' capped messages in ``states``."""
    sets = IdSets(session)
    for chunk in sets.batches(contact_ids):
        rows = session.execute(
            select(Message.id, Message.contact_id, instant).where(
                sets.among(Message.contact_id, chunk),
                Message.kind == str(MessageKind.AUTOMATED),
                Message.category.in_(sorted(CAPPED_CATEGORIES)),
                Message.state.in_(sorted(states)),
                *where,
            )
        )
        for message_id, contact_id, at in rows:
            if contact_id is not None:
                yield message_id, contact_id, _aware(at)


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
