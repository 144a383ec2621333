"""What PostgreSQL alone spends to store a bulk write's rows: the floor under the import and
enroll figures.

A first import and a bulk enroll are each one transaction, and one transaction runs on one
server process: its CPU seconds are a floor no second core lowers. After a timed run, these
functions copy the rows it wrote out of the scratch database (binary COPY) and back in, inside
a transaction that is rolled back, and read the CPU seconds of their own connection's server
process from /proc:

- the rows alone, into bare copies of their tables (no index, no key, no trigger);
- for the import, each index of those tables built on the copies afterwards, as a first load
  rebuilds what it dropped;
- for the enroll, the rows into copies with the tables' indexes, then into the tables
  themselves (emptied in the transaction): their indexes and the statement-level key triggers.

What is left between these and the timed run's backend seconds is the run's own reading,
planning and protocol. Linux only, and the server must run on this machine; elsewhere the
figures are None.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from bench import cpu
from tests.support.services import libpq

IMPORT_TABLES = ("contacts", "consent_events", "consents", "contact_tags")
ENROLL_TABLES = ("enrollments", "messages")
# The contacts page's trigram index: most of a first load's rebuild, named apart.
SEARCH_INDEX = "ix_contacts_search"
_BLOCK = 1 << 20


def _backend_pid(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    return int(row[0]) if row else 0


def backend_seconds(conn: psycopg.Connection) -> float | None:
    """CPU seconds so far of the server process serving ``conn`` (None: not on this machine)."""
    return cpu.process_seconds(_backend_pid(conn))


class _Meter:
    """Backend CPU seconds between marks; None throughout when they cannot be read."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._pid = _backend_pid(conn)
        self._last = cpu.process_seconds(self._pid)

    def lap(self) -> float | None:
        now = cpu.process_seconds(self._pid)
        spent = None if now is None or self._last is None else now - self._last
        self._last = now
        return spent


def dump(conn: psycopg.Connection, tables: Sequence[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for table in tables:
        data = bytearray()
        with conn.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy:
            for block in copy:
                data += block
        out[table] = bytes(data)
    return out


def _load(conn: psycopg.Connection, table: str, data: bytes) -> None:
    view = memoryview(data)
    with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
        for start in range(0, len(view), _BLOCK):
            copy.write(view[start : start + _BLOCK])


@contextmanager
def _rolled_back(conn: psycopg.Connection) -> Iterator[None]:
    # A checkpoint first, so that none lands inside the measure by chance.
    conn.execute("CHECKPOINT")
    with conn.transaction(force_rollback=True):
        yield


def _copies(conn: psycopg.Connection, tables: Sequence[str], including: str) -> None:
    for table in tables:
        conn.execute(f"CREATE TABLE floor_{table} (LIKE {table} INCLUDING {including})")


def _load_all(conn: psycopg.Connection, data: dict[str, bytes], prefix: str) -> None:
    for table, rows in data.items():
        _load(conn, prefix + table, rows)


@dataclass(frozen=True)
class ImportFloor:
    rows: float | None  # the rows alone, into bare tables
    indexes: dict[str, float | None]  # each index built on them afterwards, by name


def import_floor(url: str) -> ImportFloor:
    """The server's part of a first load of the rows now in the import's tables (``url``: the
    scratch database's, as SQLAlchemy takes it)."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        data = dump(conn, IMPORT_TABLES)
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' AND tablename = ANY(%s) ORDER BY tablename, indexname",
            (list(IMPORT_TABLES),),
        ).fetchall()
        built: dict[str, float | None] = {}
        with _rolled_back(conn):
            _copies(conn, IMPORT_TABLES, "DEFAULTS")
            meter = _Meter(conn)
            _load_all(conn, data, "floor_")
            rows = meter.lap()
            for table, name, definition in indexes:
                # The same definition, on the copy: "CREATE [UNIQUE] INDEX name ON public.table ..."
                on_copy = f" INDEX floor_{name} ON floor_{table} "
                conn.execute(definition.replace(f" INDEX {name} ON public.{table} ", on_copy))
                built[name] = meter.lap()
        return ImportFloor(rows, built)


@dataclass(frozen=True)
class EnrollFloor:
    rows: float | None  # into bare tables
    indexed: float | None  # into copies with the tables' indexes
    tables: float | None  # into the tables themselves: indexes and key triggers


def enroll_floor(url: str) -> EnrollFloor:
    """The server's part of writing the rows now in the enroll's tables, three ways."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        data = dump(conn, ENROLL_TABLES)
        spent: list[float | None] = []
        for including in ("DEFAULTS", "ALL", None):
            with _rolled_back(conn):
                if including is None:
                    # Emptied here, so the rows go into empty tables as the timed enroll's did.
                    conn.execute(f"TRUNCATE {', '.join(ENROLL_TABLES)} CASCADE")
                else:
                    _copies(conn, ENROLL_TABLES, including)
                meter = _Meter(conn)
                _load_all(conn, data, "" if including is None else "floor_")
                spent.append(meter.lap())
        return EnrollFloor(*spent)


def seconds(value: float | None) -> str:
    """A floor figure as printed; None (or NaN, as a figures dict of floats keeps it): n/a."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f} s"
