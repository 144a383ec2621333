"""``outreach contacts import``: a contacts CSV into the database, streaming and batched.

Rows are read in chunks, validated (in worker processes for big files), checked against
earlier rows of the same file, matched to existing contacts, and written a chunk at a time
with bulk inserts. Everything happens in the caller's transaction: the caller commits, or
rolls back for a dry run or when the file turns out to be unusable (nothing is written then).

Matching: a row whose external_id is known updates that contact. Otherwise a row matches a
contact with the same phone (else email) and the same first and last name (ignoring case),
provided they do not carry two different external_ids. Non-blank cells overwrite; blank
cells leave the stored value alone.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from outreach.contacts.apply import BatchApplier
from outreach.contacts.bulk import initial_load
from outreach.contacts.csvformat import ContactRow, RowError
from outreach.contacts.parallel import chunked, default_workers, validated_chunks
from outreach.contacts.reader import open_contacts_csv

CHUNK_ROWS = 2500
# Below this size, starting worker processes (and the initial-load path) cost more than they save.
BIG_FILE_BYTES = 256 * 1024
KEPT_ERRORS = 1000
# A header with thousands of unknown columns (a mis-saved export) is summarised, not listed.
IGNORED_COLUMNS_SHOWN = 20


@dataclass
class ImportReport:
    file: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    consent_events: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    # How many more unknown columns there were beyond ``ignored_columns``.
    ignored_columns_more: int = 0
    # The first KEPT_ERRORS rejections; ``on_rejected`` sees every one.
    errors: list[RowError] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.rejected else 0

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "rows": self.rows,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "consent_events": self.consent_events,
            "ignored_columns": self.ignored_columns,
            "ignored_columns_more": self.ignored_columns_more,
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
        }


class InFileDuplicates:
    """Remembers each accepted row's keys, to reject later rows describing the same person."""

    def __init__(self) -> None:
        self._by_external_id: dict[str, int] = {}
        self._by_key: dict[tuple[str, str, str], list[tuple[int, str | None]]] = {}

    def first_line_of(self, row: ContactRow) -> int | None:
        if row.external_id is not None and row.external_id in self._by_external_id:
            return self._by_external_id[row.external_id]
        key = row.key
        for line, external_id in self._by_key.get(key, ()) if key else ():
            # Two rows with different external_ids are two patients sharing phone and name.
            if external_id is None or row.external_id is None or external_id == row.external_id:
                return line
        return None

    def remember(self, row: ContactRow) -> None:
        if row.external_id is not None:
            self._by_external_id[row.external_id] = row.line
        if row.key is None:
            return
        entry = (row.line, row.external_id)
        self._by_key.setdefault(row.key, []).append(entry)
        if row.phone and row.email:
            # A later row without a phone finds this person by email and name, as the
            # database match does; so must the duplicate check.
            self._by_key.setdefault((row.email, row.key[1], row.key[2]), []).append(entry)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """An import allocates millions of small tuples and keeps a key per row: Python's cycle
    collector would re-scan all of them again and again (a third of the import's time) while
    finding nothing, since none of them form cycles. Reference counting still frees them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def import_contacts_csv(
    session: Session,
    path: Path,
    *,
    clinic_timezone: str,
    recorded_by: str = "csv import",
    now: datetime,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_rejected: Callable[[RowError], None] | None = None,
) -> ImportReport:
    """Import ``path`` within the session's transaction (the caller commits). Raises
    ``CsvUnusable`` when the file itself cannot be used."""
    at = now
    with ExitStack() as stack:
        stack.enter_context(_cyclic_gc_paused())
        source = stack.enter_context(open_contacts_csv(path))
        ignored = source.header.ignored
        report = ImportReport(
            file=source.name,
            ignored_columns=ignored[:IGNORED_COLUMNS_SHOWN],
            ignored_columns_more=max(0, len(ignored) - IGNORED_COLUMNS_SHOWN),
        )
        big = source.size >= BIG_FILE_BYTES
        if workers is None:
            workers = default_workers() if big else 1
        first_load = stack.enter_context(initial_load(session) if big else nullcontext(False))
        applier = BatchApplier(
            session, source.name, clinic_timezone, recorded_by, at, nothing_stored=first_load
        )
        duplicates = InFileDuplicates()

        def reject(error: RowError) -> None:
            report.rejected += 1
            if len(report.errors) < KEPT_ERRORS:
                report.errors.append(error)
            if on_rejected is not None:
                on_rejected(error)

        for results in validated_chunks(chunked(source.rows, CHUNK_ROWS), source.header, workers):
            accepted: list[ContactRow] = []
            for result in results:
                report.rows += 1
                if isinstance(result, RowError):
                    reject(result)
                    continue
                first = duplicates.first_line_of(result)
                if first is not None:
                    reject(RowError(result.line, f"duplicate of line {first}"))
                    continue
                duplicates.remember(result)
                accepted.append(result)
            outcome = applier.apply(accepted)
            report.added += outcome.added
            report.updated += outcome.updated
            report.unchanged += outcome.unchanged
            report.consent_events += outcome.consent_events
            for error in outcome.rejected:
                reject(error)
            if on_progress is not None:
                on_progress(source.bytes_read(), source.size)
        for error in source.late_errors:
            report.rows += 1
            reject(error)
    # The writes went around the ORM: objects the session already holds may be stale.
    session.expire_all()
    return report
