"""Streaming a contacts CSV: rows with their line numbers, and "this file is unusable".

UTF-8 with or without a byte-order mark, Excel's quoting (fields in double quotes may hold
commas, quotes doubled, line breaks). Blank lines, and rows whose cells are all empty (what
spreadsheets leave below the data), are skipped. A problem with the file itself raises
``CsvUnusable`` (exit status 2), possibly half-way through: the importer's caller then rolls
back, so nothing from such a file is ever written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from outreach.contacts.csvformat import Header, HeaderError, parse_header
from outreach.errors import OutreachError

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
        reader = csv.reader(text, dialect="excel", strict=False)
        records = _records(reader, path.name)
        first = next(records, None)
        if first is None:
            raise CsvUnusable(f"{path.name} is empty: it needs at least a header line")
        try:
            header = parse_header(first[1])
        except HeaderError as exc:
            raise CsvUnusable(f"{path.name}: {exc}") from None
        yield CsvSource(path.name, size, header, records, binary)


def _records(reader: Iterator[list[str]], name: str) -> Iterator[RawRow]:
    line_num = 0
    while True:
        start = line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise CsvUnusable(
                f"{name} is not UTF-8 text (near line {start}): save it as \"CSV UTF-8\""
            ) from None
        except csv.Error as exc:
            raise CsvUnusable(f"{name} line {start}: not valid CSV ({exc})") from None
        line_num = getattr(reader, "line_num", line_num + 1)
        if "".join(cells).strip():
            yield start, cells
