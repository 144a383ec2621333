"""Large sets of ids on both databases: filtering by them, and taking new ones in bulk.

``column IN (:p1, ..., :p10000)`` is slow to build and parse at bulk sizes (psycopg rewrites
every placeholder) and SQLite caps bound parameters per statement. On PostgreSQL one array
parameter (``column = ANY(:ids)``) carries a whole batch; on SQLite batches stay small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Table, any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session

from outreach.db import is_postgres

T = TypeVar("T")
Column = ColumnElement[Any] | InstrumentedAttribute[Any]


def among(postgres: bool, column: Column, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL one array parameter instead of one per value."""
    if postgres:
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def allocate_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` fresh primary keys for ``table``, which no one else will take."""
    if count == 0:
        return []
    if is_postgres(session):
        # The sequence is looked up once (as an argument of nextval it would be, once per row).
        ids: list[int] = session.execute(
            text(
                "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(:table, 'id')::regclass AS seq) "
                "SELECT array_agg(nextval(s.seq)) FROM s, generate_series(1, :n)"
            ),
            {"table": table.name, "n": count},
        ).scalar_one()
        return ids
    # SQLite: this transaction holds the database's write lock (BEGIN IMMEDIATE), so nobody
    # else can take ids between reading the maximum and inserting.
    current: int = session.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    return list(range(current + 1, current + 1 + count))


def slices(values: Sequence[T], size: int) -> list[Sequence[T]]:
    """``values`` in consecutive pieces of at most ``size`` (batches of ids per statement or
    per task)."""
    return [values[start : start + size] for start in range(0, len(values), size)]


class IdSets:
    """Batches of ids sized for the database, and the filter for one batch."""

    def __init__(self, session: Session) -> None:
        self.postgres = is_postgres(session)
        self.size = 100_000 if self.postgres else 10_000

    def batches(self, values: Sequence[T]) -> Iterator[Sequence[T]]:
        yield from slices(values, self.size)

    def among(self, column: Column, batch: Sequence[Any]) -> ColumnElement[bool]:
        return among(self.postgres, column, batch)
