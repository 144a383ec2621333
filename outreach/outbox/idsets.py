"""Filtering by large sets of ids or addresses, fast on both databases.

``column IN (:p1, ..., :p10000)`` is slow to build and parse at bulk sizes (psycopg rewrites
every placeholder) and SQLite caps bound parameters per statement. On PostgreSQL one array
parameter (``column = ANY(:ids)``) carries a whole batch; on SQLite batches stay small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, any_, literal
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session

from outreach.db import is_postgres

T = TypeVar("T")


class IdSets:
    def __init__(self, session: Session) -> None:
        self.postgres = is_postgres(session)
        self.size = 100_000 if self.postgres else 10_000

    def batches(self, values: Sequence[T]) -> Iterator[Sequence[T]]:
        for start in range(0, len(values), self.size):
            yield values[start : start + self.size]

    def among(self, column: InstrumentedAttribute[Any], batch: Sequence[Any]) -> ColumnElement[bool]:
        if self.postgres:
            return column == any_(literal(list(batch), ARRAY(column.type)))
        return column.in_(batch)
