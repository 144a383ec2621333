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

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Column,
    ColumnElement,
    CursorResult,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, aliased

from outreach import outbox
from outreach.closures import campaign_policy, load_closures
from outreach.config import Settings
from outreach.db import is_postgres
from outreach.delivery.caps import CAPPED_CATEGORIES, cap_of, planned_instants
from outreach.errors import NotFound, OutreachError
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
from outreach.outbox.idsets import IdSets
from outreach.scheduling import FrequencyCap, SendPolicy, count_days, plan_steps, timing_of

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
# The contacts a call is about: every per-contact look-up joins it instead of carrying 100k ids.
_requested = Table("tmp_enroll_contacts", _tmp, Column("contact_id", Integer), prefixes=["TEMPORARY"])
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
class _NewEnrollments:
    """Enrollments to write: each member is (contact id, index into ``plans``); a plan is the
    steps a contact gets with their due instants, shared by contacts with the same answers."""

    campaign: Campaign
    members: list[tuple[int, int]]
    plans: list[list[tuple[CampaignStep, datetime]]]
    started_at: datetime
    created_at: datetime

    @property
    def messages(self) -> int:
        return sum(len(self.plans[plan]) for _contact, plan in self.members)


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


def _fill_requested(session: Session, contact_ids: Sequence[int]) -> None:
    connection = session.connection()
    _requested.create(connection)
    if not contact_ids:
        return
    if is_postgres(session):
        driver = connection.connection.driver_connection
        assert driver is not None
        statement = "COPY tmp_enroll_contacts (contact_id) FROM STDIN"
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write("".join(f"{cid}\n" for cid in contact_ids))
    else:
        connection.execute(_requested.insert(), [{"contact_id": cid} for cid in contact_ids])


def _load_facts(
    session: Session,
    contact_ids: Sequence[int],
    category: str,
    channels: Iterable[str],
    *,
    enrolled_in: int | None = None,
) -> tuple[dict[int, _Facts], dict[int, tuple[int, str]]]:
    """Per existing contact: zone, usable channels (consent, address, suppression) and pause;
    with ``enrolled_in``, also (enrollment id, state) for contacts already in that campaign.

    One query joined with a temporary table of the ids. It answers with flags rather than
    addresses, grouped: one row per distinct set of answers, carrying its contacts' ids as
    text ("12,13" or, when enrolled, "12:7,13:8"), so Python handles a few rows, not 100k.
    """
    wanted = sorted(set(channels))
    contacts: Table = Contact.__table__  # type: ignore[assignment]
    answers: list[ColumnElement[Any]] = [contacts.c.timezone, contacts.c.automation_paused_at.is_not(None)]
    joined = _requested.join(contacts, contacts.c.id == _requested.c.contact_id)
    for channel in wanted:
        consent = aliased(Consent)
        suppression = aliased(Suppression)
        address = contacts.c.phone if channel == Channel.SMS else contacts.c.email
        # At most one row each: consents are keyed by (contact, channel, category), suppressions
        # are unique per (channel, address).
        joined = joined.outerjoin(
            consent,
            and_(
                consent.contact_id == contacts.c.id,
                consent.channel == channel,
                consent.category == category,
                consent.state == str(ConsentState.GRANTED),
            ),
        ).outerjoin(suppression, and_(suppression.channel == channel, suppression.address == address))
        answers += [
            consent.contact_id.is_not(None),
            func.coalesce(address, "") != "",
            suppression.id.is_not(None),
        ]
    member: ColumnElement[Any] = cast(contacts.c.id, String)
    if enrolled_in is not None:
        enrollments = ENROLLMENTS
        joined = joined.outerjoin(
            enrollments,
            and_(enrollments.c.contact_id == contacts.c.id, enrollments.c.campaign_id == enrolled_in),
        )
        answers.append(enrollments.c.state)
        member = case(
            (enrollments.c.id.is_(None), member), else_=member + literal(":") + cast(enrollments.c.id, String)
        )
    postgres = is_postgres(session)
    members = func.string_agg(member, literal(",")) if postgres else func.group_concat(member, ",")
    _fill_requested(session, contact_ids)
    try:
        rows = session.connection().execute(select(*answers, members).select_from(joined).group_by(*answers))
        groups = [tuple(row) for row in rows]
    finally:
        _requested.drop(session.connection())
    facts: dict[int, _Facts] = {}
    existing: dict[int, tuple[int, str]] = {}
    for *values, ids in groups:
        state = values.pop() if enrolled_in is not None else None
        fact = _facts_of(tuple(values), wanted, category)
        if state is None:
            facts.update(dict.fromkeys(map(int, ids.split(",")), fact))
            continue
        for pair in ids.split(","):
            contact, enrolled = pair.split(":")
            facts[int(contact)] = fact
            existing[int(contact)] = (int(enrolled), state)
    return facts, existing


def _facts_of(answers: tuple[Any, ...], channels: list[str], category: str) -> _Facts:
    timezone, paused = answers[0], answers[1]
    usable: set[str] = set()
    missing: dict[str, str] = {}
    for i, channel in enumerate(channels):
        granted, has_address, suppressed = answers[2 + 3 * i : 5 + 3 * i]
        if not granted:
            missing[channel] = f"no {category} consent on {channel}"
        elif not has_address:
            missing[channel] = f"no {'phone number' if channel == Channel.SMS else 'email address'}"
        elif suppressed:
            missing[channel] = f"{channel} address suppressed"
        else:
            usable.add(channel)
    return _Facts(_zone(timezone), frozenset(usable), missing, bool(paused))


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
    number of statements whatever the number of contacts and steps."""
    # The campaign row lock serialises everything that creates enrollments in this campaign,
    # so the look-up below is still true when the new enrollments are written.
    campaign = _campaign(session, slug, lock=True)
    if not campaign.active:
        raise OutreachError(
            f"campaign {slug!r} is inactive (its file was removed); it takes no new enrollments"
        )
    steps = [s for s in campaign.steps if s.active]
    anchor = start or now
    ids = sorted(set(contact_ids))
    facts, existing = _load_facts(
        session, ids, campaign.category, {s.channel for s in steps}, enrolled_in=campaign.id
    )
    policy, cap = _policy_and_cap(session, settings, campaign)
    fresh = [cid for cid in ids if cid in facts and cid not in existing]
    taken_all = planned_instants(session, fresh) if cap is not None and fresh else {}

    report = EnrollmentReport(campaign.slug)
    plan_ids: dict[tuple[object, ...], int] = {}
    plans: list[list[tuple[CampaignStep, datetime]]] = []
    members: list[tuple[int, int]] = []
    repair: list[int] = []
    # Per distinct facts (shared objects): the steps the contact can receive and why others are skipped.
    choices: dict[int, tuple[list[CampaignStep], dict[str, str]]] = {}
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
        choice = choices.get(id(fact))
        if choice is None:
            choice = choices[id(fact)] = (
                [s for s in steps if s.channel in fact.usable],
                {s.key: fact.missing[s.channel] for s in steps if s.channel not in fact.usable},
            )
        usable, skipped = choice
        if not usable:
            reason = "; ".join(sorted(set(fact.missing.values()))) or "the campaign has no steps"
            report.outcomes.append(ContactOutcome(cid, "refused", reason))
            continue
        instants = taken_all.get(cid)
        taken = count_days(instants, fact.zone) if instants else None
        signature = (fact.zone.key, fact.usable, tuple(sorted(taken.items())) if taken else ())
        plan_id = plan_ids.get(signature)
        if plan_id is None:
            plan_id = plan_ids[signature] = len(plans)
            due = plan_steps(
                [timing_of(s) for s in usable], anchor, fact.zone, policy, now=now, cap=cap, taken=taken
            )
            plans.append([(s, due[s.key]) for s in usable])
        members.append((cid, plan_id))
        report.outcomes.append(
            ContactOutcome(cid, "enrolled", skipped_steps=dict(skipped), messages=len(usable))
        )
    report.messages_created = _insert_fresh(session, _NewEnrollments(campaign, members, plans, anchor, now))
    if repair:
        report.messages_created += materialise_outstanding(session, settings, campaign, repair, now)
    return report


def _insert_fresh(session: Session, new: _NewEnrollments) -> int:
    """Write the new enrollments and one message per step of each one's plan. Returns the
    number of messages.

    No ON CONFLICT here, on purpose. Enrollments: ``enroll`` holds the campaign row lock and
    looked up who is enrolled after taking it; every writer of enrollments goes through it
    (SQLite: ``BEGIN IMMEDIATE`` serialises all writers), and the unique (contact, campaign)
    constraint would raise rather than duplicate if that ever changed. Messages: their keys
    name enrollment ids created by this transaction, which no other transaction can see, so
    nothing else can have written them.
    """
    if not new.members:
        return 0
    if is_postgres(session):
        _copy_fresh(session, new)
    else:
        _insert_fresh_sql(session, new)
    return new.messages


# PostgreSQL binary COPY: rows are assembled from pre-encoded fields, since most of a
# message row is the same for every contact on one plan. Binary spares the server from
# parsing three timestamps per row, which text COPY spends more time on than the insert.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"
_INT4 = struct.Struct("!i")
_INT4_FIELD = struct.Struct("!ii")
_INT8_FIELD = struct.Struct("!iq")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Contacts per write: the server inserts one chunk while the next is being built.
_COPY_CHUNK = 5000


def _field_text(value: str) -> bytes:
    data = value.encode()
    return _INT4.pack(len(data)) + data


def _field_int(value: int) -> bytes:
    return _INT4_FIELD.pack(4, value)


def _field_time(value: datetime) -> bytes:
    return _INT8_FIELD.pack(8, (value - _PG_EPOCH) // _MICROSECOND)


_ENROLLMENT_COLUMNS = (
    "id, contact_id, campaign_id, state, started_at, created_at, updated_at, stopped_channels"
)
_MESSAGE_COLUMNS = (
    "idempotency_key, contact_id, channel, category, kind, template, context, enrollment_id, "
    "step_key, due_at, state, attempts, max_attempts, created_at, updated_at"
)


def _copy_fresh(session: Session, new: _NewEnrollments) -> None:
    """PostgreSQL: enrollment ids taken from their sequence, then both tables written with
    binary COPY (PostgreSQL's multi-row insert path)."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    campaign, members = new.campaign, new.members
    stamp = _field_time(new.created_at)
    with driver.cursor() as cursor:
        # The sequence is looked up once (as an argument of nextval it would be, once per row).
        cursor.execute(
            "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence('enrollments', 'id')::regclass AS seq) "
            "SELECT nextval(s.seq) FROM s, generate_series(1, %s)",
            (len(members),),
        )
        enrollment_ids = [row[0] for row in cursor.fetchall()]
        enrollment_tail = (
            _field_int(campaign.id)
            + _field_text(str(EnrollmentState.ACTIVE))
            + _field_time(new.started_at)
            + stamp
            + stamp
            + _field_text("[]")
        )
        with cursor.copy(f"COPY enrollments ({_ENROLLMENT_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_COPY_HEADER)
            fields = struct.pack("!h", 8)
            for start in range(0, len(members), _COPY_CHUNK):
                copy.write(
                    b"".join(
                        fields + _field_int(eid) + _field_int(cid) + enrollment_tail
                        for eid, (cid, _plan) in zip(
                            enrollment_ids[start : start + _COPY_CHUNK],
                            members[start : start + _COPY_CHUNK],
                            strict=True,
                        )
                    )
                )
            copy.write(_COPY_TRAILER)
        # Per plan step: the fields between the contact id and the enrollment id, and after it.
        encoded = [
            [
                (
                    step.key,
                    _field_text(step.channel)
                    + _field_text(campaign.category)
                    + _field_text(str(MessageKind.AUTOMATED))
                    + _field_text(step.template)
                    + _field_text("{}"),
                    _field_text(step.key)
                    + _field_time(due_at)
                    + _field_text(str(MessageState.SCHEDULED))
                    + _field_int(0)
                    + _field_int(5)
                    + stamp
                    + stamp,
                )
                for step, due_at in plan
            ]
            for plan in new.plans
        ]
        # Rows go in idempotency-key order (text: "enrollment:10:..." before "enrollment:9:..."),
        # so the unique index on the key is filled left to right instead of all over the tree.
        pairs = sorted(zip(enrollment_ids, members, strict=True), key=lambda pair: f"{pair[0]}:")
        for steps in encoded:
            steps.sort(key=lambda step: step[0])
        with cursor.copy(f"COPY messages ({_MESSAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_COPY_HEADER)
            fields = struct.pack("!h", 15)
            for start in range(0, len(pairs), _COPY_CHUNK):
                copy.write(b"".join(_message_rows(pairs[start : start + _COPY_CHUNK], encoded, fields)))
            copy.write(_COPY_TRAILER)


def _message_rows(
    chunk: Iterable[tuple[int, tuple[int, int]]],
    encoded: list[list[tuple[str, bytes, bytes]]],
    fields: bytes,
) -> Iterator[bytes]:
    for eid, (cid, plan) in chunk:
        enrollment, contact = _field_int(eid), _field_int(cid)
        for key, middle, tail in encoded[plan]:
            yield fields + _field_text(step_key_for(eid, key, 0)) + contact + middle + enrollment + tail


def _insert_fresh_sql(session: Session, new: _NewEnrollments) -> None:
    """SQLite: the (contact, plan) pairs and the plans go into temporary tables, and two
    INSERT ... SELECT statements expand them into enrollments and messages."""
    campaign = new.campaign
    connection = session.connection()
    _members.create(connection)
    _plans.create(connection)
    try:
        connection.execute(
            _members.insert(),
            [{"contact_id": c, "plan_id": p, "started_at": new.started_at} for c, p in new.members],
        )
        connection.execute(
            _plans.insert(),
            [
                {
                    "plan_id": plan_id,
                    "step_key": step.key,
                    "channel": step.channel,
                    "template": step.template,
                    "due_at": due_at,
                }
                for plan_id, plan in enumerate(new.plans)
                for step, due_at in plan
            ],
        )
        stamp = literal(new.created_at, UTCDateTime())
        enrollments = ENROLLMENTS
        connection.execute(
            sqlite.insert(enrollments).from_select(
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
                    literal_column("'[]'"),
                ).where(true()),
            )
        )
        e = enrollments.c
        key = literal("enrollment:") + cast(e.id, String) + literal(":step:") + _plans.c.step_key
        connection.execute(
            sqlite.insert(MESSAGES).from_select(
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
                    literal_column("'{}'"),
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
        )
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
                .where(_of_enrollments(sets, chunk), Message.step_key.in_(keys), blocking)
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
                _of_enrollments(sets, chunk), Message.step_key.in_(keys)
            )
        ):
            if eid is None or key is None:
                continue
            earlier[(eid, key)] = earlier.get((eid, key), 0) + 1
            if not (state == MessageState.CANCELLED and reason in REMATERIALISABLE):
                blocked.add((eid, key))
    contact_ids = sorted({e[1] for e in enrollments})
    facts, _ = _load_facts(session, contact_ids, campaign.category, {s.channel for s in steps})
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


def _of_enrollments(sets: IdSets, enrollment_ids: Sequence[int]) -> ColumnElement[bool]:
    """Messages of these enrollments, found through their contacts. Messages are indexed by
    contact, not by enrollment: an index kept up to date on each of the 500k rows a bulk
    enrollment writes costs more than these look-ups gain from it."""
    owners = select(Enrollment.contact_id).where(sets.among(Enrollment.id, enrollment_ids))
    return and_(Message.contact_id.in_(owners), sets.among(Message.enrollment_id, enrollment_ids))


def cancel_campaign_steps(session: Session, campaign_id: int, step_keys: Sequence[str], reason: str) -> int:
    """Cancel the pending messages of these steps in every enrollment of the campaign."""
    in_campaign = select(Enrollment.id).where(Enrollment.campaign_id == campaign_id).scalar_subquery()
    # Through the contacts (see _of_enrollments), and then their rows of this campaign.
    members = select(Enrollment.contact_id).where(Enrollment.campaign_id == campaign_id)
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Message)
        .where(
            Message.state.in_([str(s) for s in PENDING_STATES]),
            Message.step_key.in_(list(step_keys)),
            Message.contact_id.in_(members),
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
            .where(_of_enrollments(sets, chunk), Message.state.in_([str(s) for s in PENDING_STATES]))
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
