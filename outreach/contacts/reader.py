"""Streaming a contacts CSV: rows with their line numbers, and "this file is unusable".

UTF-8 with or without a byte-order mark, Excel's quoting (fields in double quotes may hold
commas, quotes doubled, line breaks). Blank lines, and rows whose cells are all empty (what
spreadsheets leave below the data), are skipped. A problem with the file itself raises
``CsvUnusable`` (exit status 2), possibly half-way through: the importer's caller then rolls
back, so nothing from such a file is ever written.

A quote opened and never closed would make the csv module read the rest of the file into one
cell; that last record is held back and reported as ``line N: unterminated quote`` instead
(``CsvSource.late_errors``), so the rows before it still go in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from outreach.contacts.csvformat import Header, HeaderError, RowError, parse_header
from outreach.errors import OutreachError

UNTERMINATED = 'unterminated quote (a " opened and never closed)'
RawRow = tuple[int, list[str]]  # (line number where the record starts, cells)


class CsvUnusable(OutreachError):
    """The file as a whole cannot be imported: nothing is written."""

    exit_code = 2


@dataclass
class CsvSource:
    name: str
    size: int
    header: Header
    rows: Iterator[RawRow]
    _binary: BinaryIO
    # Row problems found only once ``rows`` is exhausted (an unterminated quote at the end).
    late_errors: list[RowError]

    def bytes_read(self) -> int:
        """How far into the file the reader is (it reads ahead a little): for progress bars."""
        return min(self._binary.tell(), self.size)


@contextmanager
def open_contacts_csv(path: Path) -> Iterator[CsvSource]:
    try:
        binary = path.open("rb")
        size = path.stat().st_size
    except OSError as exc:
        raise CsvUnusable(f"cannot read {path.name}: {exc.strerror or type(exc).__name__}") from None
    with binary:
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        lines = _RecordedLines(text)
        reader = csv.reader(lines, dialect="excel", strict=False)
        late_errors: list[RowError] = []
        records = _records(reader, lines, path.name, late_errors)
        first = next(records, None)
        if first is None:
            if late_errors:
                raise CsvUnusable(f"{path.name} line 1: the header has an unterminated quote")
            raise CsvUnusable(f"{path.name} is empty: it needs at least a header line")
        try:
            header = parse_header(first[1])
        except HeaderError as exc:
            raise CsvUnusable(f"{path.name}: {exc}") from None
        yield CsvSource(path.name, size, header, records, binary, late_errors)


class _RecordedLines:
    """The text's lines, remembering those handed out since the last ``take``: the raw text
    of one CSV record, to tell an unterminated quote from a cell that spans lines."""

    def __init__(self, text: Iterator[str]) -> None:
        self._text = text
        self._taken: list[str] = []

    def __iter__(self) -> _RecordedLines:
        return self

    def __next__(self) -> str:
        line = next(self._text)
        self._taken.append(line)
        return line

    def take(self) -> list[str]:
        taken, self._taken = self._taken, []
        return taken


def _ends_inside_quotes(raw: list[str]) -> bool:
    try:
        for _ in csv.reader(raw, dialect="excel", strict=True):
            pass
    except csv.Error as exc:
        # The csv module's own words for end of input inside a quoted field.
        return "unexpected end of data" in str(exc)
    return False


def _records(
    reader: Iterator[list[str]], lines: _RecordedLines, name: str, late_errors: list[RowError]
) -> Iterator[RawRow]:
    """Records one behind the reader: the last one is checked for an unterminated quote."""
    line_num = 0
    pending: RawRow | None = None
    pending_raw: list[str] = []
    while True:
        start = line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            if pending is not None:
                if _ends_inside_quotes(pending_raw):
                    late_errors.append(RowError(pending[0], UNTERMINATED))
                else:
                    yield pending
            return
        except UnicodeDecodeError:
            raise CsvUnusable(
                f"{name} is not UTF-8 text (near line {start}): save it as \"CSV UTF-8\""
            ) from None
        except csv.Error as exc:
            raise CsvUnusable(f"{name} line {start}: not valid CSV ({exc})") from None
        line_num = getattr(reader, "line_num", line_num + 1)
        raw = lines.take()
        if "".join(cells).strip():
            if pending is not None:
                yield pending
            pending, pending_raw = (start, cells), raw
