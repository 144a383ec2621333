"""The audit trail as service functions: record an event, read them back, export them.

Every view of a patient's record and every change made by a person or an integration is
recorded (HIPAA's audit-controls standard, 45 CFR 164.312(b)). The web app, the JSON API and
the CLI all call ``record``; the table refuses updates and deletes.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Select, Table, insert, select
from sqlalchemy.orm import Session

from outreach.contacts.csvformat import escape_cell
from outreach.models import AuditEvent

# The table, for the insert: an INSERT naming the mapped class goes through the ORM's bulk
# persistence (a tenth of a small API call's web CPU) for nothing the event needs.
_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]


class ActorKind(enum.StrEnum):
    USER = "user"
    TOKEN = "token"  # noqa: S105 (a kind of actor, not a secret)
    CLI = "cli"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Who did it, and from where (the client's address for web and API calls)."""

    kind: ActorKind
    name: str
    address: str | None = None


def record(
    session: Session,
    actor: Actor,
    action: str,
    now: datetime,
    *,
    subject_type: str | None = None,
    subject_id: int | str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one event in the caller's transaction: it commits or rolls back with the change.

    A plain INSERT, not a mapped object: the event is never read back in the same transaction,
    and every API request writes one, so the unit of work's bookkeeping is not worth its cost."""
    session.execute(
        insert(_EVENTS).values(
            at=now,
            actor_kind=str(actor.kind),
            actor=actor.name,
            action=action,
            subject_type=subject_type,
            subject_id=None if subject_id is None else str(subject_id),
            address=actor.address,
            detail=dict(detail or {}),
        )
    )


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _query(where: AuditFilter) -> Select[AuditEvent]:
    query = select(AuditEvent)
    if where.actor:
        query = query.where(AuditEvent.actor == where.actor)
    if where.action:
        query = query.where(AuditEvent.action == where.action)
    if where.subject_type:
        query = query.where(AuditEvent.subject_type == where.subject_type)
    if where.subject_id:
        query = query.where(AuditEvent.subject_id == where.subject_id)
    if where.since:
        query = query.where(AuditEvent.at >= where.since)
    if where.until:
        query = query.where(AuditEvent.at < where.until)
    return query


def events(
    session: Session, where: AuditFilter, *, limit: int = 200, before_id: int | None = None
) -> list[AuditEvent]:
    """Newest first; ``before_id`` pages back through older events."""
    query = _query(where).order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return list(session.scalars(query))


CSV_COLUMNS = ("id", "at", "actor_kind", "actor", "action", "subject_type", "subject_id", "address", "detail")


def _csv_rows(session: Session, where: AuditFilter) -> Iterator[list[str]]:
    query = _query(where).order_by(AuditEvent.id).execution_options(yield_per=1000)
    for event in session.scalars(query):
        yield [
            str(event.id),
            event.at.isoformat(),
            event.actor_kind,
            event.actor,
            event.action,
            event.subject_type or "",
            event.subject_id or "",
            event.address or "",
            ";".join(f"{k}={v}" for k, v in sorted(event.detail.items())),
        ]


def export_csv(session: Session, where: AuditFilter, out: IO[str]) -> int:
    """Write matching events oldest first as CSV (UTC ISO-8601 times); returns the row count.

    Cells a spreadsheet would run as formulas are escaped, as in the contacts export."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for row in _csv_rows(session, where):
        writer.writerow([escape_cell(cell) for cell in row])
        count += 1
    return count
