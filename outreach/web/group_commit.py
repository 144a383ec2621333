"""Group commit: rows from requests arriving together, written in one transaction.

A webhook that must not answer before its row is durable pays for a transaction: a
connection checkout, a round trip and a commit, most of it Python overhead that is the same
for one row or a hundred. Here each request hands its row to one writer thread and waits for
the commit that holds it; the writer takes everything that queued up while it was writing
the previous batch. Under load the batches grow by themselves, with no timer to tune; alone,
a request waits for its own transaction and no longer.

A failed transaction fails every request of its batch (the same exception, so the database's
own errors still become a 503 with Retry-After); nothing is answered before its commit.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")

# Bounds one transaction (and the statement's parameters) under a burst.
MAX_BATCH = 500


class GroupCommit(Generic[Item]):
    """``await writer.write(item)`` returns once ``write_batch`` has committed the item."""

    def __init__(self, write_batch: Callable[[Sequence[Item]], None], name: str) -> None:
        self._write_batch = write_batch
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Item, Future[None]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    async def write(self, item: Item) -> None:
        await asyncio.wrap_future(self.submit(item))

    def submit(self, item: Item) -> Future[None]:
        """Hand ``item`` to the writer without waiting (from any thread); the future is done
        once its batch is."""
        done: Future[None] = Future()
        self._ensure_started()
        self._queue.put((item, done))
        return done

    def queued(self) -> int:
        """Items handed over and not yet taken by the writer (for tests and diagnostics)."""
        return self._queue.qsize()

    def close(self) -> None:
        """Write what is queued, then stop the thread (the app's shutdown)."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _ensure_started(self) -> None:
        # Started on first use, in the process that serves: never carried across a fork.
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: Sequence[tuple[Item, Future[None]]]) -> None:
        try:
            self._write_batch([item for item, _ in batch])
        except BaseException as exc:  # every waiter learns of it; the thread lives on
            for _, done in batch:
                done.set_exception(exc)
        else:
            for _, done in batch:
                done.set_result(None)
