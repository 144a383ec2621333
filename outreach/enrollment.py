"""Enroll contacts in a campaign: materialise every step as outbox rows at once.

Rules (documented in docs/campaigns.md):

* **Idempotent.** A contact is enrolled in a campaign at most once; enrolling again creates
  nothing, except steps that were never materialised and now can be (e.g. consent granted
  since): those are added. Idempotency keys are ``enrollment:{id}:step:{key}``; a step
  materialised again after a pause or a re-sync gets ``...:r{n}`` (n = earlier rows for it).
* **Consent per channel.** A step needs consent for the campaign's category on its channel,
  an address on that channel, and no suppression. A contact with none of the campaign's
  channels usable is refused; one with some is enrolled and the other steps are skipped —
  both reported per contact. Contacts whose automation is paused (crisis) are refused.
* **Timing.** ``outreach.scheduling.plan_steps``: nominal time (never before now), moved into
  the window (global narrowed by the campaign's), off weekends/closures, and past days full
  under the frequency cap for education/marketing.
* **Pause** cancels the enrollment's pending messages (reason ``PAUSED_REASON``); **resume**
  moves the start forward by the time spent paused and re-materialises the steps that were
  not sent. **Unenroll** cancels pending messages for good.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    CursorResult,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from outreach import outbox
from outreach.campaigns import timing_of
from outreach.caps import CAPPED_CATEGORIES, cap_of, planned_instants
from outreach.closures import campaign_policy, load_closures
from outreach.config import Settings
from outreach.db import is_postgres
from outreach.errors import NotFound, OutreachError
from outreach.idsets import IdSets
from outreach.models import (
    PENDING_STATES,
    Campaign,
    CampaignStep,
    Channel,
    Consent,
    ConsentState,
    Contact,
    ContactTag,
    Enrollment,
    EnrollmentState,
    Message,
    MessageKind,
    MessageState,
    Suppression,
    UTCDateTime,
    utcnow,
)
from outreach.scheduling import FrequencyCap, SendPolicy, count_days, plan_steps

# Cancellation reasons. Dispatch uses the same words when it meets a paused enrollment.
PAUSED_REASON = "the enrollment is paused"
REPLACED_REASON = "replaced: the campaign step changed"
UNENROLLED_REASON = "the contact left the campaign"
# Rows cancelled for these reasons do not stop the step from being materialised again.
REMATERIALISABLE = frozenset({PAUSED_REASON, REPLACED_REASON})

# Typed handles on the mapped tables, for Core INSERT ... SELECT and executemany UPDATE.
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[assignment]
MESSAGES: Table = Message.__table__  # type: ignore[assignment]

_tmp = MetaData()
_members = Table(
    "tmp_enroll_members",
    _tmp,
    Column("contact_id", Integer),
    Column("plan_id", Integer),
    Column("started_at", UTCDateTime()),
    prefixes=["TEMPORARY"],
)
_plans = Table(
    "tmp_enroll_plans",
    _tmp,
    Column("plan_id", Integer),
    Column("step_key", String(64)),
    Column("channel", String(8)),
    Column("template", String(200)),
    Column("due_at", UTCDateTime()),
    prefixes=["TEMPORARY"],
)


@dataclass
class ContactOutcome:
    contact_id: int
    outcome: str  # enrolled | already_enrolled | refused
    reason: str | None = None
    skipped_steps: dict[str, str] = field(default_factory=dict)  # step key -> why
    messages: int = 0


@dataclass
class EnrollmentReport:
    campaign: str
    outcomes: list[ContactOutcome] = field(default_factory=list)
    messages_created: int = 0

    def with_outcome(self, outcome: str) -> list[ContactOutcome]:
        return [o for o in self.outcomes if o.outcome == outcome]

    @property
    def enrolled(self) -> list[int]:
        return [o.contact_id for o in self.with_outcome("enrolled")]

    @property
    def already_enrolled(self) -> list[int]:
        return [o.contact_id for o in self.with_outcome("already_enrolled")]

    @property
    def refused(self) -> dict[int, str]:
        return {o.contact_id: o.reason or "" for o in self.with_outcome("refused")}

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "enrolled": len(self.enrolled),
            "already_enrolled": len(self.already_enrolled),
            "refused": len(self.refused),
            "messages_created": self.messages_created,
            "contacts": [
                {
                    "contact_id": o.contact_id,
                    "outcome": o.outcome,
                    "reason": o.reason,
                    "skipped_steps": o.skipped_steps,
                    "messages": o.messages,
                }
                for o in self.outcomes
            ],
        }


@dataclass(frozen=True)
class ChangeReport:
    enrollments: int
    messages_cancelled: int = 0
    messages_created: int = 0


@dataclass(frozen=True)
class _Facts:
    zone: ZoneInfo | None
    usable: frozenset[str]  # channels this campaign may use for the contact
    missing: dict[str, str]  # channel -> why it cannot be used
    paused: bool


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def contact_ids_for_tag(session: Session, tag: str) -> list[int]:
    return sorted(session.scalars(select(ContactTag.contact_id).where(ContactTag.tag == tag)))


def _campaign(session: Session, slug: str, *, lock: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.slug == slug)
    if lock and is_postgres(session):
        # Serialises concurrent enrollments into one campaign (SQLite: BEGIN IMMEDIATE already does).
        query = query.with_for_update()
    campaign = session.scalar(query)
    if campaign is None:
        raise NotFound(f"no campaign with slug {slug!r} (run `outreach campaigns sync`?)")
    return campaign


def _load_facts(
    session: Session, contact_ids: Sequence[int], category: str, channels: Iterable[str]
) -> dict[int, _Facts]:
    channels = set(channels)
    contacts: dict[int, tuple[str, str | None, str | None, bool]] = {}
    granted: set[tuple[int, str]] = set()
    ids = IdSets(session)
    for chunk in ids.batches(contact_ids):
        for cid, tz, phone, email, paused_at in session.execute(
            select(
                Contact.id, Contact.timezone, Contact.phone, Contact.email, Contact.automation_paused_at
            ).where(ids.among(Contact.id, chunk))
        ):
            contacts[cid] = (tz, phone, email, paused_at is not None)
        granted.update(
            (cid, channel)
            for cid, channel in session.execute(
                select(Consent.contact_id, Consent.channel).where(
                    ids.among(Consent.contact_id, chunk),
                    Consent.category == category,
                    Consent.state == str(ConsentState.GRANTED),
                )
            )
        )
    suppressed = _suppressed(session, contacts, channels)
    facts: dict[int, _Facts] = {}
    for cid, (tz, phone, email, paused) in contacts.items():
        usable: set[str] = set()
        missing: dict[str, str] = {}
        for channel in channels:
            address = phone if channel == Channel.SMS else email
            if (cid, channel) not in granted:
                missing[channel] = f"no {category} consent on {channel}"
            elif not address:
                missing[channel] = f"no {'phone number' if channel == Channel.SMS else 'email address'}"
            elif (channel, address) in suppressed:
                missing[channel] = f"{channel} address suppressed"
            else:
                usable.add(channel)
        facts[cid] = _Facts(_zone(tz), frozenset(usable), missing, paused)
    return facts


def _suppressed(
    session: Session, contacts: dict[int, tuple[str, str | None, str | None, bool]], channels: set[str]
) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    sets = IdSets(session)
    for channel in channels:
        index = 1 if channel == Channel.SMS else 2
        addresses = sorted({str(c[index]) for c in contacts.values() if c[index]})
        for batch in sets.batches(addresses):
            found.update(
                session.execute(
                    select(Suppression.channel, Suppression.address).where(
                        Suppression.channel == channel,
                        sets.among(Suppression.address, batch),
                    )
                )
            )
    return found


def _policy_and_cap(
    session: Session, settings: Settings, campaign: Campaign
) -> tuple[SendPolicy, FrequencyCap | None]:
    policy = campaign_policy(settings, campaign, load_closures(session))
    cap = cap_of(settings) if campaign.category in CAPPED_CATEGORIES else None
    return policy, cap


def enroll(
    session: Session,
    settings: Settings,
    slug: str,
    contact_ids: Iterable[int],
    start: datetime | None = None,
    *,
    now: datetime,
) -> EnrollmentReport:
    """Enroll contacts and materialise their schedule (see module doc). Bulk: a constant
    number of queries per 10,000 contacts, whatever the number of steps."""
    campaign = _campaign(session, slug, lock=True)
    if not campaign.active:
        raise OutreachError(
            f"campaign {slug!r} is inactive (its file was removed); it takes no new enrollments"
        )
    steps = [s for s in campaign.steps if s.active]
    anchor = start or now
    ids = sorted(set(contact_ids))
    facts = _load_facts(session, ids, campaign.category, {s.channel for s in steps})
    existing: dict[int, tuple[int, str]] = {}
    sets = IdSets(session)
    for chunk in sets.batches(ids):
        for eid, cid, state in session.execute(
            select(Enrollment.id, Enrollment.contact_id, Enrollment.state).where(
                Enrollment.campaign_id == campaign.id, sets.among(Enrollment.contact_id, chunk)
            )
        ):
            existing[cid] = (eid, state)
    policy, cap = _policy_and_cap(session, settings, campaign)
    fresh = [cid for cid in ids if cid in facts and cid not in existing]
    taken_all = planned_instants(session, fresh) if cap is not None else {}

    report = EnrollmentReport(campaign.slug)
    plan_ids: dict[tuple[object, ...], int] = {}
    plan_rows: list[dict[str, Any]] = []
    members: list[tuple[int, int, datetime]] = []
    repair: list[int] = []
    for cid in ids:
        fact = facts.get(cid)
        if fact is None:
            report.outcomes.append(ContactOutcome(cid, "refused", "no such contact"))
            continue
        if cid in existing:
            eid, state = existing[cid]
            if state == EnrollmentState.UNENROLLED:
                report.outcomes.append(
                    ContactOutcome(cid, "refused", "unenrolled from this campaign earlier")
                )
                continue
            if state == EnrollmentState.ACTIVE:
                repair.append(eid)
            report.outcomes.append(
                ContactOutcome(cid, "already_enrolled", None if state == "active" else state)
            )
            continue
        if fact.zone is None:
            report.outcomes.append(ContactOutcome(cid, "refused", "the contact's time zone is unknown"))
            continue
        if fact.paused:
            report.outcomes.append(ContactOutcome(cid, "refused", "automation is paused for this contact"))
            continue
        usable = [s for s in steps if s.channel in fact.usable]
        skipped = {s.key: fact.missing[s.channel] for s in steps if s.channel not in fact.usable}
        if not usable:
            reason = "; ".join(sorted(set(fact.missing.values()))) or "the campaign has no steps"
            report.outcomes.append(ContactOutcome(cid, "refused", reason))
            continue
        taken = count_days(taken_all.get(cid, ()), fact.zone)
        signature = (fact.zone.key, fact.usable, tuple(sorted(taken.items())))
        plan_id = plan_ids.get(signature)
        if plan_id is None:
            plan_id = len(plan_ids) + 1
            plan_ids[signature] = plan_id
            due = plan_steps(
                [timing_of(s) for s in usable], anchor, fact.zone, policy, now=now, cap=cap, taken=taken
            )
            plan_rows.extend(
                {
                    "plan_id": plan_id,
                    "step_key": s.key,
                    "channel": s.channel,
                    "template": s.template,
                    "due_at": due[s.key],
                }
                for s in usable
            )
        members.append((cid, plan_id, anchor))
        report.outcomes.append(ContactOutcome(cid, "enrolled", skipped_steps=skipped, messages=len(usable)))
    report.messages_created = _insert_fresh(session, campaign, members, plan_rows, now)
    if repair:
        report.messages_created += materialise_outstanding(session, settings, campaign, repair, now)
    return report


def _insert_fresh(
    session: Session,
    campaign: Campaign,
    members: list[tuple[int, int, datetime]],
    plan_rows: list[dict[str, Any]],
    now: datetime,
) -> int:
    """New enrollments and all their messages in two INSERT ... SELECT statements.

    Contacts sharing a zone, start and channels share one plan, so the database expands
    (enrollment x plan step) itself; only (contact, plan) pairs cross the wire (COPY on
    PostgreSQL). Same defaults and ON CONFLICT DO NOTHING as ``outbox.insert_messages``.
    """
    if not members:
        return 0
    connection = session.connection()
    postgres = is_postgres(session)
    _members.create(connection)
    _plans.create(connection)
    try:
        if postgres:
            driver = connection.connection.driver_connection
            assert driver is not None
            with (
                driver.cursor() as cursor,
                cursor.copy("COPY tmp_enroll_members (contact_id, plan_id, started_at) FROM STDIN") as copy,
            ):
                for row in members:
                    copy.write_row(row)
        else:
            connection.execute(
                _members.insert(), [{"contact_id": c, "plan_id": p, "started_at": s} for c, p, s in members]
            )
        connection.execute(_plans.insert(), plan_rows)
        insert = postgresql.insert if postgres else sqlite.insert
        stamp = literal(now, UTCDateTime())

        def json_literal(text: str) -> ColumnElement[Any]:
            raw: ColumnElement[Any] = literal_column(f"'{text}'")
            return cast(raw, JSON) if postgres else raw

        enrollments = ENROLLMENTS
        connection.execute(
            insert(enrollments)
            .from_select(
                [
                    "contact_id",
                    "campaign_id",
                    "state",
                    "started_at",
                    "created_at",
                    "updated_at",
                    "stopped_channels",
                ],
                select(
                    _members.c.contact_id,
                    literal(campaign.id),
                    literal(str(EnrollmentState.ACTIVE)),
                    _members.c.started_at,
                    stamp,
                    stamp,
                    json_literal("[]"),
                ).where(true()),
            )
            .on_conflict_do_nothing(index_elements=["contact_id", "campaign_id"])
        )
        e = enrollments.c
        key = literal("enrollment:") + cast(e.id, String) + literal(":step:") + _plans.c.step_key
        messages = MESSAGES
        result: CursorResult[Any] = connection.execute(
            insert(messages)
            .from_select(
                [
                    "idempotency_key",
                    "contact_id",
                    "channel",
                    "category",
                    "kind",
                    "template",
                    "context",
                    "enrollment_id",
                    "step_key",
                    "due_at",
                    "state",
                    "attempts",
                    "max_attempts",
                    "created_at",
                    "updated_at",
                ],
                select(
                    key,
                    e.contact_id,
                    _plans.c.channel,
                    literal(campaign.category),
                    literal(str(MessageKind.AUTOMATED)),
                    _plans.c.template,
                    json_literal("{}"),
                    e.id,
                    _plans.c.step_key,
                    _plans.c.due_at,
                    literal(str(MessageState.SCHEDULED)),
                    literal(0),
                    literal(5),
                    stamp,
                    stamp,
                )
                .select_from(
                    _members.join(
                        enrollments, and_(e.contact_id == _members.c.contact_id, e.campaign_id == campaign.id)
                    ).join(_plans, _plans.c.plan_id == _members.c.plan_id)
                )
                .where(true()),
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            # SQLAlchemy only keeps an INSERT's rowcount when asked to.
            .execution_options(preserve_rowcount=True)
        )
        return max(result.rowcount, 0)
    finally:
        _plans.drop(connection)
        _members.drop(connection)


def step_key_for(enrollment_id: int, step_key: str, earlier_rows: int) -> str:
    base = f"enrollment:{enrollment_id}:step:{step_key}"
    return base if earlier_rows == 0 else f"{base}:r{earlier_rows}"


def materialise_outstanding(
    session: Session,
    settings: Settings,
    campaign: Campaign,
    enrollment_ids: Sequence[int],
    now: datetime,
    *,
    step_keys: set[str] | None = None,
) -> int:
    """Materialise, for active enrollments, every active step that has no message yet (or only
    ones cancelled by a pause or a re-sync) and that the contact can receive. Returns rows created."""
    steps = [s for s in campaign.steps if s.active and (step_keys is None or s.key in step_keys)]
    if not steps or not enrollment_ids:
        return 0
    keys = [s.key for s in steps]
    sets = IdSets(session)
    blocking = or_(
        Message.state != str(MessageState.CANCELLED),
        Message.state_reason.is_(None),
        Message.state_reason.not_in(sorted(REMATERIALISABLE)),
    )
    # Cheap first pass: enrollments where every requested step already has a blocking row are done.
    candidates: list[int] = []
    for chunk in sets.batches(sorted(set(enrollment_ids))):
        full = set(
            session.scalars(
                select(Message.enrollment_id)
                .where(sets.among(Message.enrollment_id, chunk), Message.step_key.in_(keys), blocking)
                .group_by(Message.enrollment_id)
                .having(func.count(func.distinct(Message.step_key)) >= len(keys))
            )
        )
        candidates.extend(eid for eid in chunk if eid not in full)
    enrollments: list[tuple[int, int, datetime, list[str]]] = []
    earlier: dict[tuple[int, str], int] = {}
    blocked: set[tuple[int, str]] = set()
    for chunk in sets.batches(candidates):
        enrollments.extend(
            session.execute(
                select(
                    Enrollment.id, Enrollment.contact_id, Enrollment.started_at, Enrollment.stopped_channels
                ).where(sets.among(Enrollment.id, chunk), Enrollment.state == str(EnrollmentState.ACTIVE))
            )
        )
        for eid, key, state, reason in session.execute(
            select(Message.enrollment_id, Message.step_key, Message.state, Message.state_reason).where(
                sets.among(Message.enrollment_id, chunk), Message.step_key.in_(keys)
            )
        ):
            if eid is None or key is None:
                continue
            earlier[(eid, key)] = earlier.get((eid, key), 0) + 1
            if not (state == MessageState.CANCELLED and reason in REMATERIALISABLE):
                blocked.add((eid, key))
    contact_ids = sorted({e[1] for e in enrollments})
    facts = _load_facts(session, contact_ids, campaign.category, {s.channel for s in steps})
    policy, cap = _policy_and_cap(session, settings, campaign)
    taken_all = planned_instants(session, contact_ids) if cap is not None else {}
    rows: list[dict[str, Any]] = []
    for eid, cid, started_at, stopped in enrollments:
        fact = facts.get(cid)
        if fact is None or fact.zone is None:
            continue
        todo = [
            s
            for s in steps
            if (eid, s.key) not in blocked and s.channel in fact.usable and s.channel not in (stopped or [])
        ]
        if not todo:
            continue
        taken = count_days(taken_all.get(cid, ()), fact.zone)
        due = plan_steps(
            [timing_of(s) for s in todo], started_at, fact.zone, policy, now=now, cap=cap, taken=taken
        )
        rows.extend(
            _message_row(campaign, eid, cid, s, due[s.key], earlier.get((eid, s.key), 0)) for s in todo
        )
    created = 0
    for start in range(0, len(rows), 5000):
        created += outbox.insert_messages(session, rows[start : start + 5000])
    return created


def _message_row(
    campaign: Campaign,
    enrollment_id: int,
    contact_id: int,
    step: CampaignStep,
    due_at: datetime,
    earlier: int,
) -> dict[str, Any]:
    return {
        "idempotency_key": step_key_for(enrollment_id, step.key, earlier),
        "contact_id": contact_id,
        "channel": step.channel,
        "category": campaign.category,
        "kind": str(MessageKind.AUTOMATED),
        "template": step.template,
        "enrollment_id": enrollment_id,
        "step_key": step.key,
        "due_at": due_at,
    }


def cancel_campaign_steps(session: Session, campaign_id: int, step_keys: Sequence[str], reason: str) -> int:
    """Cancel the pending messages of these steps in every enrollment of the campaign."""
    in_campaign = select(Enrollment.id).where(Enrollment.campaign_id == campaign_id).scalar_subquery()
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Message)
        .where(
            Message.state.in_([str(s) for s in PENDING_STATES]),
            Message.step_key.in_(list(step_keys)),
            Message.enrollment_id.in_(in_campaign),
        )
        .values(state=str(MessageState.CANCELLED), state_reason=reason, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return max(result.rowcount, 0)


def _cancel_enrollments(session: Session, enrollment_ids: Sequence[int], reason: str) -> int:
    cancelled = 0
    sets = IdSets(session)
    for chunk in sets.batches(enrollment_ids):
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Message)
            .where(
                sets.among(Message.enrollment_id, chunk), Message.state.in_([str(s) for s in PENDING_STATES])
            )
            .values(state=str(MessageState.CANCELLED), state_reason=reason, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        cancelled += max(result.rowcount, 0)
    return cancelled


def _select(
    session: Session,
    *,
    slug: str | None,
    contact_ids: Iterable[int] | None,
    everything: bool,
    states: Iterable[str],
) -> list[tuple[int, int, int, datetime, datetime | None]]:
    """(id, contact_id, campaign_id, started_at, paused_at) of the enrollments a command names."""
    ids = sorted(set(contact_ids)) if contact_ids is not None else None
    if slug is None and ids is None and not everything:
        raise OutreachError("say which enrollments: a campaign slug, contacts, or all")
    query = select(
        Enrollment.id,
        Enrollment.contact_id,
        Enrollment.campaign_id,
        Enrollment.started_at,
        Enrollment.paused_at,
    ).where(Enrollment.state.in_([str(s) for s in states]))
    if slug is not None:
        query = query.where(Enrollment.campaign_id == _campaign(session, slug).id)
    if ids is None:
        return list(session.execute(query))
    found: list[tuple[int, int, int, datetime, datetime | None]] = []
    sets = IdSets(session)
    for chunk in sets.batches(ids):
        found.extend(session.execute(query.where(sets.among(Enrollment.contact_id, chunk))))
    return found


def _set_state(session: Session, ids: Sequence[int], expected: str, values: dict[str, Any]) -> list[int]:
    """Conditionally move enrollments; returns the ids that moved (a concurrent change wins)."""
    moved: list[int] = []
    sets = IdSets(session)
    for chunk in sets.batches(ids):
        moved.extend(
            session.scalars(
                update(Enrollment)
                .where(sets.among(Enrollment.id, chunk), Enrollment.state == expected)
                .values(updated_at=utcnow(), **values)
                .returning(Enrollment.id)
                .execution_options(synchronize_session=False)
            )
        )
    return moved


def pause(
    session: Session,
    *,
    slug: str | None = None,
    contact_ids: Iterable[int] | None = None,
    everything: bool = False,
    now: datetime,
) -> ChangeReport:
    """Pause active enrollments: pending messages are cancelled (``PAUSED_REASON``)."""
    found = _select(
        session, slug=slug, contact_ids=contact_ids, everything=everything, states=[EnrollmentState.ACTIVE]
    )
    moved = _set_state(
        session,
        [f[0] for f in found],
        EnrollmentState.ACTIVE,
        {"state": str(EnrollmentState.PAUSED), "paused_at": now},
    )
    return ChangeReport(len(moved), _cancel_enrollments(session, moved, PAUSED_REASON))


def resume(
    session: Session,
    settings: Settings,
    *,
    slug: str | None = None,
    contact_ids: Iterable[int] | None = None,
    everything: bool = False,
    now: datetime,
) -> ChangeReport:
    """Resume paused enrollments: the start moves forward by the time spent paused, so the
    remaining steps keep their spacing; steps not yet sent are materialised again."""
    found = _select(
        session, slug=slug, contact_ids=contact_ids, everything=everything, states=[EnrollmentState.PAUSED]
    )
    resumed: dict[int, list[int]] = {}
    table = ENROLLMENTS
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.state == str(EnrollmentState.PAUSED))
        .values(
            state=str(EnrollmentState.ACTIVE),
            started_at=bindparam("b_started"),
            paused_at=None,
            updated_at=now,
        )
    )
    for eid, _cid, campaign_id, started_at, paused_at in found:
        shifted = started_at + (now - paused_at) if paused_at is not None else started_at
        moved: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            statement, {"b_id": eid, "b_started": shifted}
        )
        if moved.rowcount == 1:
            resumed.setdefault(campaign_id, []).append(eid)
    created = 0
    for campaign_id, ids in resumed.items():
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        created += materialise_outstanding(session, settings, campaign, ids, now)
    return ChangeReport(sum(len(v) for v in resumed.values()), messages_created=created)


def unenroll(
    session: Session,
    *,
    slug: str | None = None,
    contact_ids: Iterable[int] | None = None,
    everything: bool = False,
    now: datetime,
) -> ChangeReport:
    """End enrollments for good: pending messages cancelled; re-enrolling is refused."""
    found = _select(
        session,
        slug=slug,
        contact_ids=contact_ids,
        everything=everything,
        states=[EnrollmentState.ACTIVE, EnrollmentState.PAUSED],
    )
    moved: list[int] = []
    for state in (EnrollmentState.ACTIVE, EnrollmentState.PAUSED):
        moved += _set_state(
            session,
            [f[0] for f in found],
            state,
            {"state": str(EnrollmentState.UNENROLLED), "paused_at": None},
        )
    return ChangeReport(len(moved), _cancel_enrollments(session, moved, UNENROLLED_REASON))
