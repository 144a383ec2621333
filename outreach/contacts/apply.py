"""Writing one batch of accepted CSV rows: match, insert new contacts, update known ones.

A handful of queries per batch, however many rows: existing contacts are looked up by
external_id, phone and email in bulk, new contacts and their tags, consent events and
consent rows go in through ``BulkWriter``. Consent is only recorded where it changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from outreach.contacts.bulk import BulkWriter
from outreach.contacts.csvformat import CONSENT_COLUMNS, REVOKE, ContactRow, RowError, match_key
from outreach.contacts.fields import DEFAULT_LANGUAGE
from outreach.models import Consent, ConsentEvent, ConsentSource, Contact, ContactTag
from outreach.outbox import cancel_pending, lock_contacts

CONTACTS: Table = Contact.__table__  # type: ignore[assignment]
TAGS: Table = ContactTag.__table__  # type: ignore[assignment]
EVENTS: Table = ConsentEvent.__table__  # type: ignore[assignment]
CONSENTS: Table = Consent.__table__  # type: ignore[assignment]

CONTACT_COLUMNS = (
    "id", "external_id", "first_name", "last_name", "phone", "email", "timezone", "language",
    "created_at", "updated_at",
)
# Fields a CSV row may change on an existing contact (a blank cell changes nothing).
UPDATABLE = ("external_id", "first_name", "last_name", "phone", "email", "timezone", "language")
EVENT_COLUMNS = (
    "id", "contact_id", "channel", "category", "state", "source", "evidence", "recorded_by",
    "occurred_at",
)
CONSENT_ROW_COLUMNS = ("contact_id", "channel", "category", "state", "updated_at", "event_id")


class Stored(NamedTuple):
    """The fields of an existing contact that an import compares against."""

    id: int
    external_id: str | None
    first_name: str
    last_name: str
    phone: str | None
    email: str | None
    timezone: str
    language: str

    def key(self, address: str) -> tuple[str, str, str] | None:
        return match_key(address, self.first_name, self.last_name)


@dataclass
class BatchOutcome:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    consent_events: int = 0
    rejected: list[RowError] = field(default_factory=list)


class _ConsentChange(NamedTuple):
    contact_id: int
    channel: str
    category: str
    state: str
    evidence: str


class BatchApplier:
    def __init__(
        self,
        session: Session,
        file_name: str,
        clinic_timezone: str,
        recorded_by: str,
        now: datetime,
        *,
        nothing_stored: bool = False,
    ) -> None:
        self.session = session
        self.writer = BulkWriter(session)
        self.file_name = file_name
        self.clinic_timezone = clinic_timezone
        self.recorded_by = recorded_by
        self.now = now
        # Existing contacts this import has already updated, and from which line.
        self.touched: dict[int, int] = {}
        # The contacts table was empty and is locked against other writers (an initial load):
        # the only contacts a row could match are earlier rows of this file, and the in-file
        # duplicate check has already turned those away, so there is nothing to look up.
        self.nothing_stored = nothing_stored

    def apply(self, rows: Sequence[ContactRow]) -> BatchOutcome:
        outcome = BatchOutcome()
        if not rows:
            return outcome
        matches = {} if self.nothing_stored else self._match(rows)
        new_rows: list[ContactRow] = []
        matched: list[tuple[ContactRow, Stored]] = []
        for row in rows:
            stored = matches.get(row.line)
            if stored is None:
                new_rows.append(row)
            elif stored.id in self.touched:
                line = self.touched[stored.id]
                outcome.rejected.append(RowError(row.line, f"matches the same contact as line {line}"))
            else:
                self.touched[stored.id] = row.line
                matched.append((row, stored))

        outcome.consent_events = self._insert_new(new_rows) if new_rows else 0
        outcome.added = len(new_rows)
        updated, changes = self._update_existing(matched)
        outcome.updated = updated
        outcome.unchanged = len(matched) - updated
        outcome.consent_events += self._record_consent(changes)
        return outcome

    # -- matching ------------------------------------------------------------------------

    def _load(self, condition: ColumnElement[bool]) -> list[Stored]:
        c = CONTACTS.c
        query = select(
            c.id, c.external_id, c.first_name, c.last_name, c.phone, c.email, c.timezone, c.language
        ).where(condition)
        return [Stored(*row) for row in self.session.execute(query)]

    def _match(self, rows: Sequence[ContactRow]) -> dict[int, Stored]:
        """Line -> the stored contact the row updates."""
        c = CONTACTS.c
        external_ids = [r.external_id for r in rows if r.external_id]
        by_external_id: dict[str | None, Stored] = {}
        if external_ids:
            found = self._load(self.writer.is_in(c.external_id, external_ids))
            by_external_id = {s.external_id: s for s in found}
        matches: dict[int, Stored] = {}
        pending: list[ContactRow] = []
        for row in rows:
            stored = by_external_id.get(row.external_id) if row.external_id else None
            if stored is not None:
                matches[row.line] = stored
            else:
                pending.append(row)
        phones = sorted({r.phone for r in pending if r.phone})
        emails = sorted({r.email for r in pending if not r.phone and r.email})
        candidates: dict[tuple[str, str, str], list[Stored]] = defaultdict(list)
        if phones:
            for stored in self._load(self.writer.is_in(c.phone, phones)):
                if key := stored.key(stored.phone or ""):
                    candidates[key].append(stored)
        if emails:
            for stored in self._load(self.writer.is_in(c.email, emails)):
                if key := stored.key(stored.email or ""):
                    candidates[key].append(stored)
        for row in pending:
            for stored in sorted(candidates.get(row.key, []) if row.key else [], key=lambda s: s.id):
                if stored.external_id is None or row.external_id is None:
                    matches[row.line] = stored
                    break
        return matches

    # -- new contacts --------------------------------------------------------------------

    def _insert_new(self, rows: Sequence[ContactRow]) -> int:
        """Insert new contacts with their tags and consent; returns the consent events written.

        The hottest loop of a big import: plain tuples, ids allocated once per batch."""
        contact_ids = self.writer.allocate_ids(CONTACTS, len(rows))
        event_count = sum(
            len(cell.categories) for row in rows for cell in (row.sms_consent, row.email_consent) if cell
        )
        event_ids = iter(self.writer.allocate_ids(EVENTS, event_count))
        now, clinic_zone, by = self.now, self.clinic_timezone, self.recorded_by
        source = str(ConsentSource.CSV_IMPORT)
        contacts: list[tuple[Any, ...]] = []
        tags: list[tuple[int, str]] = []
        events: list[tuple[Any, ...]] = []
        consents: list[tuple[Any, ...]] = []
        for contact_id, row in zip(contact_ids, rows, strict=True):
            contacts.append((
                contact_id, row.external_id, row.first_name or "", row.last_name or "", row.phone,
                row.email, row.timezone or row.derived_timezone or clinic_zone,
                row.language or DEFAULT_LANGUAGE, now, now,
            ))
            if row.tags:
                tags.extend([(contact_id, tag) for tag in row.tags])
            for column, channel, cell in (
                ("sms_consent", "sms", row.sms_consent), ("email_consent", "email", row.email_consent)
            ):
                if cell is None:
                    continue
                evidence = self._evidence(row.line, column, cell.text)
                for category in cell.categories:
                    event_id = next(event_ids)
                    events.append((event_id, contact_id, channel, category, cell.state, source, evidence,
                                   by, now))
                    consents.append((contact_id, channel, category, cell.state, now, event_id))
        self.writer.insert(CONTACTS, CONTACT_COLUMNS, contacts)
        self.writer.insert(TAGS, ("contact_id", "tag"), tags)
        self.writer.insert(EVENTS, EVENT_COLUMNS, events)
        self.writer.insert(CONSENTS, CONSENT_ROW_COLUMNS, consents)
        return event_count

    # -- existing contacts ---------------------------------------------------------------

    def _update_existing(
        self, matched: Sequence[tuple[ContactRow, Stored]]
    ) -> tuple[int, list[_ConsentChange]]:
        if not matched:
            return 0, []
        ids = [stored.id for _, stored in matched]
        current_tags = self._current_tags(ids)
        current_consent = self._current_consent(ids)

        updates: list[dict[str, Any]] = []
        retag: dict[int, tuple[str, ...]] = {}
        changes: list[_ConsentChange] = []
        changed_ids: set[int] = set()
        for row, stored in matched:
            values = _changed_fields(row, stored)
            if values:
                merged = stored._asdict() | values
                updates.append({f"_{k}": merged[k] for k in UPDATABLE} | {"_id": stored.id})
                changed_ids.add(stored.id)
            if row.tags is not None and row.tags != current_tags.get(stored.id, ()):
                retag[stored.id] = row.tags
                changed_ids.add(stored.id)
            for column, channel in CONSENT_COLUMNS.items():
                cell = row.consent(channel)
                if cell is None:
                    continue
                for category in cell.categories:
                    if current_consent.get((stored.id, channel, category)) != cell.state:
                        evidence = self._evidence(row.line, column, cell.text)
                        changes.append(_ConsentChange(stored.id, channel, category, cell.state, evidence))
                        changed_ids.add(stored.id)

        # The locking protocol (outreach.outbox): lock before changing anyone's consent.
        lock_contacts(self.session, {change.contact_id for change in changes})
        if updates:
            c = CONTACTS.c
            statement = (
                update(CONTACTS)
                .where(c.id == bindparam("_id"))
                .values({name: bindparam(f"_{name}") for name in UPDATABLE} | {"updated_at": self.now})
            )
            self.session.execute(statement, updates)
        if retag:
            self.session.execute(delete(TAGS).where(self.writer.is_in(TAGS.c.contact_id, list(retag))))
            self.writer.insert(
                TAGS, ("contact_id", "tag"), [(cid, tag) for cid, tags in retag.items() for tag in tags]
            )
        return len(changed_ids), changes

    def _current_tags(self, ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        found: dict[int, list[str]] = defaultdict(list)
        query = select(TAGS.c.contact_id, TAGS.c.tag).where(self.writer.is_in(TAGS.c.contact_id, ids))
        for contact_id, tag in self.session.execute(query):
            found[contact_id].append(tag)
        return {cid: tuple(sorted(tags)) for cid, tags in found.items()}

    def _current_consent(self, ids: Sequence[int]) -> dict[tuple[int, str, str], str]:
        c = CONSENTS.c
        query = select(c.contact_id, c.channel, c.category, c.state).where(
            self.writer.is_in(c.contact_id, ids)
        )
        return {(cid, ch, cat): state for cid, ch, cat, state in self.session.execute(query)}

    # -- consent -------------------------------------------------------------------------

    def _evidence(self, line: int, column: str, cell: str) -> str:
        # Where the consent came from, never who it is about: the file, the line, the cell.
        return f"{self.file_name} line {line}: {column} = {cell}"

    def _record_consent(self, changes: Sequence[_ConsentChange]) -> int:
        """Consent changes of existing contacts: ledger events, then the current state."""
        if not changes:
            return 0
        event_ids = self.writer.allocate_ids(EVENTS, len(changes))
        source = str(ConsentSource.CSV_IMPORT)
        events = [
            (event_id, ch.contact_id, ch.channel, ch.category, ch.state, source, ch.evidence,
             self.recorded_by, self.now)
            for event_id, ch in zip(event_ids, changes, strict=True)
        ]
        self.writer.insert(EVENTS, EVENT_COLUMNS, events)
        self._upsert_consents([
            {"contact_id": ch.contact_id, "channel": ch.channel, "category": ch.category,
             "state": ch.state, "updated_at": self.now, "event_id": event_id}
            for event_id, ch in zip(event_ids, changes, strict=True)
        ])
        self._cancel_revoked([ch for ch in changes if ch.state == REVOKE])
        return len(changes)

    def _upsert_consents(self, rows: list[dict[str, Any]]) -> None:
        dialect = postgresql if self.writer.postgres else sqlite
        statement = dialect.insert(CONSENTS)
        statement = statement.on_conflict_do_update(
            index_elements=["contact_id", "channel", "category"],
            set_={
                "state": statement.excluded.state,
                "updated_at": statement.excluded.updated_at,
                "event_id": statement.excluded.event_id,
            },
        )
        self.session.execute(statement, rows)

    def _cancel_revoked(self, revoked: Iterable[_ConsentChange]) -> None:
        """An opt-out stops what is already scheduled on that channel, not only future sends."""
        grouped: dict[tuple[int, str], list[str]] = defaultdict(list)
        for change in revoked:
            grouped[(change.contact_id, change.channel)].append(change.category)
        for (contact_id, channel), categories in grouped.items():
            cancel_pending(
                self.session, "consent revoked by CSV import",
                contact_id=contact_id, channel=channel, categories=categories,
                now=self.now,
            )


def _changed_fields(row: ContactRow, stored: Stored) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in ("first_name", "last_name", "phone", "email", "timezone", "language"):
        value = getattr(row, name)
        if value is not None and value != getattr(stored, name):
            values[name] = value
    if row.external_id is not None and stored.external_id is None:
        values["external_id"] = row.external_id
    return values
