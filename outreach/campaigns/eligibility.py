"""Who may be enrolled: one grouped query answers, per contact, zone, usable channels and pause."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Session, aliased

from outreach.db import is_postgres
from outreach.errors import NotFound
from outreach.models import (
    Campaign,
    Channel,
    Consent,
    ConsentState,
    Contact,
    ContactTag,
    Enrollment,
    Suppression,
)

# Typed handles on the mapped tables, for Core INSERT ... SELECT and executemany UPDATE.
ENROLLMENTS: Table = Enrollment.__table__  # type: ignore[assignment]


_tmp = MetaData()
# The contacts a call is about: every per-contact look-up joins it instead of carrying 100k ids.
_requested = Table("tmp_enroll_contacts", _tmp, Column("contact_id", Integer), prefixes=["TEMPORARY"])


@dataclass(frozen=True)
class Facts:
    zone: ZoneInfo | None
    usable: frozenset[str]  # channels this campaign may use for the contact
    missing: dict[str, str]  # channel -> why it cannot be used
    paused: bool


@lru_cache(maxsize=512)
def zone_named(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def contact_ids_for_tag(session: Session, tag: str) -> list[int]:
    return sorted(session.scalars(select(ContactTag.contact_id).where(ContactTag.tag == tag)))


def find_campaign(session: Session, slug: str, *, lock: bool = False) -> Campaign:
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


def load_facts(
    session: Session,
    contact_ids: Sequence[int],
    category: str,
    channels: Iterable[str],
    *,
    enrolled_in: int | None = None,
) -> tuple[dict[int, Facts], dict[int, tuple[int, str]]]:
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
    facts: dict[int, Facts] = {}
    existing: dict[int, tuple[int, str]] = {}
    for *values, ids in groups:
        state = values.pop() if enrolled_in is not None else None
        fact = facts_of(tuple(values), wanted, category)
        if state is None:
            facts.update(dict.fromkeys(map(int, ids.split(",")), fact))
            continue
        for pair in ids.split(","):
            contact, enrolled = pair.split(":")
            facts[int(contact)] = fact
            existing[int(contact)] = (int(enrolled), state)
    return facts, existing


def facts_of(answers: tuple[Any, ...], channels: list[str], category: str) -> Facts:
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
    return Facts(zone_named(timezone), frozenset(usable), missing, bool(paused))
