"""``outreach appointments import``: an appointments CSV, with the contacts importer's rules.

Columns (header names match ignoring case, spaces, ``_`` and ``-``; unknown columns are
reported and ignored): ``external_id``, ``contact_id`` or ``contact_external_id`` (one is
required), ``date`` (YYYY-MM-DD) and ``time`` (HH:MM, 24-hour) — or ``starts_at``
("YYYY-MM-DD HH:MM") — local to ``timezone`` (default: the clinic's), ``type``,
``duration_minutes``, ``location``, ``status`` (booked, confirmed, cancelled, completed,
no_show; blank = booked).

Each row is an idempotent upsert (see ``upsert``): importing the same file twice changes
nothing. A bad row is reported with its line number and reason and the good rows still go in
(exit status 1); a file that cannot be read at all changes nothing (exit status 2).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.appointments.policy import PolicyError, load_policies
from outreach.appointments.service import AppointmentError
from outreach.appointments.upsert import PUSHABLE_STATUSES, AppointmentData, upsert
from outreach.config import Settings
from outreach.contacts.csvformat import HeaderError, RowError, header_key, locate_columns, unescape_cell
from outreach.contacts.fields import FieldError, normalize_external_id, normalize_timezone
from outreach.contacts.reader import CsvUnusable
from outreach.errors import OutreachError
from outreach.models import Contact

COLUMNS = (
    "external_id",
    "contact_id",
    "contact_external_id",
    "date",
    "time",
    "starts_at",
    "timezone",
    "type",
    "duration_minutes",
    "location",
    "status",
)
_KNOWN = {header_key(c): c for c in COLUMNS}


@dataclass
class ImportReport:
    file: str
    rows: int = 0
    booked: int = 0
    rescheduled: int = 0
    updated: int = 0
    unchanged: int = 0
    cancelled: int = 0
    closed: int = 0
    rejected: int = 0
    message_ids: list[int] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.rejected else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "booked": self.booked,
            "rescheduled": self.rescheduled,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "cancelled": self.cancelled,
            "closed": self.closed,
            "rejected": self.rejected,
            "messages_scheduled": len(self.message_ids),
            "ignored_columns": self.ignored_columns,
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
        }


def parse_header(cells: list[str], name: str) -> tuple[dict[str, int], list[str]]:
    try:
        positions, ignored = locate_columns(cells, _KNOWN)
    except HeaderError as exc:
        raise CsvUnusable(f"{name}: {exc}") from None
    if "contact_id" not in positions and "contact_external_id" not in positions:
        raise CsvUnusable(f"{name}: the header needs a contact_id or contact_external_id column")
    if "starts_at" not in positions and not {"date", "time"} <= positions.keys():
        raise CsvUnusable(f"{name}: the header needs starts_at, or date and time columns")
    if "type" not in positions:
        raise CsvUnusable(f"{name}: the header has no type column")
    return positions, ignored


def _records(path: Path) -> tuple[str, list[tuple[int, list[str]]]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CsvUnusable(f"cannot read {path.name}: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvUnusable(f'{path.name} is not UTF-8 text: save it as "CSV UTF-8"') from None
    reader = csv.reader(io.StringIO(text, newline=""), dialect="excel", strict=True)
    records: list[tuple[int, list[str]]] = []
    line = 0
    try:
        for cells in reader:
            start, line = line + 1, reader.line_num
            if any(c.strip() for c in cells):
                records.append((start, cells))
    except csv.Error as exc:
        raise CsvUnusable(f"{path.name} line {line + 1}: not valid CSV ({exc})") from None
    return path.name, records


class _RowProblem(ValueError):
    pass


def _starts_at(values: dict[str, str], zone_name: str) -> datetime:
    try:
        if values.get("starts_at"):
            naive = datetime.strptime(" ".join(values["starts_at"].split()), "%Y-%m-%d %H:%M")
        else:
            naive = datetime.combine(
                date.fromisoformat(values.get("date", "")), time.fromisoformat(values.get("time", ""))
            )
    except ValueError:
        raise _RowProblem("invalid date or time (use YYYY-MM-DD and 24-hour HH:MM)") from None
    return naive.replace(tzinfo=ZoneInfo(zone_name))


def _row_data(
    session: Session, settings: Settings, values: dict[str, str], types: set[str]
) -> AppointmentData:
    problems: list[str] = []
    contact_id: int | None = None
    if values.get("contact_id"):
        if not values["contact_id"].isdigit():
            problems.append("contact_id must be a number")
        else:
            contact_id = session.scalar(select(Contact.id).where(Contact.id == int(values["contact_id"])))
            if contact_id is None:
                problems.append("unknown contact_id")
    elif values.get("contact_external_id"):
        contact_id = session.scalar(
            select(Contact.id).where(Contact.external_id == values["contact_external_id"])
        )
        if contact_id is None:
            problems.append("unknown contact_external_id")
    else:
        problems.append("no contact_id or contact_external_id")
    zone_name = settings.clinic_timezone
    if values.get("timezone"):
        try:
            zone_name = normalize_timezone(values["timezone"])
        except FieldError as exc:
            problems.append(str(exc))
    starts: datetime | None = None
    try:
        starts = _starts_at(values, zone_name)
    except _RowProblem as exc:
        problems.append(str(exc))
    kind = values.get("type", "")
    if kind not in types:
        problems.append("unknown type" if kind else "no type")
    duration: int | None = None
    if values.get("duration_minutes"):
        if not values["duration_minutes"].isdigit():
            problems.append("duration_minutes must be a whole number")
        else:
            duration = int(values["duration_minutes"])
    status = values.get("status", "").lower() or None
    if status is not None and status not in PUSHABLE_STATUSES:
        problems.append("unknown status")
    external_id: str | None = None
    try:
        external_id = normalize_external_id(values.get("external_id", ""))
    except FieldError as exc:
        problems.append(str(exc))
    if problems or contact_id is None or starts is None:
        raise _RowProblem("; ".join(problems))
    return AppointmentData(
        contact_id=contact_id,
        starts_at=starts,
        type=kind,
        external_id=external_id,
        duration_minutes=duration,
        location=values.get("location") or None,
        timezone=zone_name if values.get("timezone") else None,
        status=status,
    )


def import_appointments_csv(
    session: Session, settings: Settings, path: Path, *, notify: bool = True, now: datetime
) -> ImportReport:
    """Import ``path`` within the session's transaction (the caller commits). Raises
    ``CsvUnusable`` when the file itself cannot be used."""
    at = now
    name, records = _records(path)
    if not records:
        raise CsvUnusable(f"{name} is empty: it needs at least a header line")
    positions, ignored = parse_header(records[0][1], name)
    report = ImportReport(file=name, ignored_columns=ignored)
    types = set(load_policies(settings.templates_dir))
    first_line: dict[str, int] = {}
    for line, cells in records[1:]:
        report.rows += 1
        values = {
            column: unescape_cell(cells[index]).strip() if index < len(cells) else ""
            for column, index in positions.items()
        }
        try:
            data = _row_data(session, settings, values, types)
            if data.external_id is not None:
                if data.external_id in first_line:
                    raise _RowProblem(f"duplicate of line {first_line[data.external_id]}")
                first_line[data.external_id] = line
            # A savepoint per row: a row the database refuses leaves the others intact.
            with session.begin_nested():
                change = upsert(session, settings, data, notify=notify, now=at)
        except (_RowProblem, AppointmentError, PolicyError, OutreachError) as exc:
            report.rejected += 1
            report.errors.append(RowError(line, str(exc)))
            continue
        _count(report, change.action)
        report.message_ids.extend(change.message_ids)
    return report


def _count(report: ImportReport, action: str) -> None:
    if action == "booked":
        report.booked += 1
    elif action == "rescheduled":
        report.rescheduled += 1
    elif action in ("updated", "confirmed"):
        report.updated += 1
    elif action == "cancelled":
        report.cancelled += 1
    elif action in ("completed", "no_show"):
        report.closed += 1
    else:
        report.unchanged += 1
