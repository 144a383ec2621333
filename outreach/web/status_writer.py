"""Group commit for status callbacks: one writer per web process stores them in batches.

A transaction per callback costs a commit each (3-4 ms measured here, most of it waiting for
the write-ahead log), and a web process can hold only so many of those in flight; one
transaction for every callback that arrived meanwhile costs ~70 us a row (docs/delivery.md).
So each request puts its callback on a queue and awaits its own future; one task drains the
queue, inserts what it found in one transaction (in a worker thread, off the event loop), and
resolves the futures: a request is answered 200 only once its callback is committed. If the
insert fails, every request in that batch gets the error (the webhook answers 503 and Twilio
retries), so nothing is acknowledged that was not stored.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from outreach.channels.twilio.callbacks import StatusEvent
from outreach.db import transaction
from outreach.delivery import ingest

# The most callbacks one transaction takes: bounds the time the first of them waits.
MAX_BATCH = 500

Pending = tuple[StatusEvent, datetime, "asyncio.Future[None]"]


class StatusWriter:
    """Stores callbacks in batches for the event loop it was created on."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self.loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._task = self.loop.create_task(self._drain())

    async def store(self, event: StatusEvent, now: datetime) -> None:
        """Return once ``event`` is committed; raise what the insert raised otherwise."""
        done: asyncio.Future[None] = self.loop.create_future()
        await self._queue.put((event, now, done))
        await done

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await run_in_threadpool(self._insert, [(event, at) for event, at, _ in batch])
            except Exception as exc:  # each waiting request answers for itself
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)

    def _insert(self, received: list[tuple[StatusEvent, datetime]]) -> None:
        with transaction(self._factory) as session:
            ingest.store(session, received)


def writer_for(state: object, factory: sessionmaker[Session]) -> StatusWriter:
    """The app's writer for the running event loop (a test client may start a new loop)."""
    writer: StatusWriter | None = getattr(state, "status_writer", None)
    if writer is None or writer.loop is not asyncio.get_running_loop():
        writer = StatusWriter(factory)
        setattr(state, "status_writer", writer)  # noqa: B010 (Starlette's State takes attributes)
    return writer
