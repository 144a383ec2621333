"""Validating CSV rows on every core.

Validating a row costs ~26 µs (phone and email most of it), which for a 100k-row file is
seconds of one core: worker processes validate chunks while the parent writes the previous
ones. Chunks come back in file order, and at most a few are in flight, so memory stays bounded
however long the file is.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from multiprocessing.pool import AsyncResult

from outreach.contacts.csvformat import ContactRow, Header, RowError, validate_row
from outreach.contacts.fields import normalize_email, normalize_phone, normalize_timezone
from outreach.contacts.reader import RawRow

Validated = list[ContactRow | RowError]

_worker_header: Header | None = None


def chunked(rows: Iterable[RawRow], size: int) -> Iterator[list[RawRow]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def validate_chunk(header: Header, chunk: list[RawRow]) -> Validated:
    return [validate_row(line, cells, header) for line, cells in chunk]


def _init_worker(header: Header) -> None:
    global _worker_header
    _worker_header = header
    # A short-lived worker making only acyclic tuples: the cycle collector would find nothing.
    gc.disable()


def _validate_in_worker(chunk: list[RawRow]) -> Validated:
    assert _worker_header is not None
    return validate_chunk(_worker_header, chunk)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _warm_up() -> None:
    """Load phone metadata, zone data and the validators once, before forking, so every
    worker shares them instead of loading its own."""
    normalize_phone("+19252891430")
    normalize_email("warm.up@example.org")
    normalize_timezone("UTC")


def validated_chunks(
    chunks: Iterable[list[RawRow]], header: Header, workers: int
) -> Iterator[Validated]:
    """Each chunk validated, in order; in ``workers`` processes when more than one."""
    if workers <= 1:
        for chunk in chunks:
            yield validate_chunk(header, chunk)
        return
    _warm_up()
    # fork shares the warmed-up state and starts in milliseconds; elsewhere spawn is the safe choice.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    context = multiprocessing.get_context(method)
    in_flight: deque[AsyncResult[Validated]] = deque()
    with context.Pool(workers, initializer=_init_worker, initargs=(header,)) as pool:
        for chunk in chunks:
            in_flight.append(pool.apply_async(_validate_in_worker, (chunk,)))
            if len(in_flight) > 2 * workers:
                yield in_flight.popleft().get()
        while in_flight:
            yield in_flight.popleft().get()
