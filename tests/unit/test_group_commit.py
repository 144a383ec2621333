"""The web process's group commit: every waiter learns the outcome of the transaction that held
its item, batches form by themselves while one is being written, and a failed batch does not
stop the writer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from outreach.web.group_commit import GroupCommit


class Store:
    """Stands in for the transaction: records each batch, and can be held or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.fail_next = False

    def write(self, batch: Sequence[int]) -> None:
        self.entered.set()
        self.release.wait(timeout=10)
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the database went away")
        self.batches.append(list(batch))


def test_items_that_arrive_while_a_batch_is_written_share_the_next_transaction() -> None:
    store = Store()
    writer: GroupCommit[int] = GroupCommit(store.write, name="test")

    async def scenario() -> None:
        store.release.clear()
        first = asyncio.create_task(writer.write(0))
        await asyncio.to_thread(store.entered.wait, 10)  # the writer holds item 0's transaction
        later = [asyncio.create_task(writer.write(n)) for n in range(1, 21)]
        # Each task hands its item over at its first step; yield until all twenty have.
        deadline = time.monotonic() + 10
        while writer.queued() < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0)
        assert writer.queued() == 20, "the twenty items queue up behind the held transaction"
        assert not first.done(), "nothing is answered before its commit"
        store.release.set()
        await asyncio.wait_for(asyncio.gather(first, *later), timeout=10)

    asyncio.run(scenario())
    writer.close()
    assert store.batches[0] == [0]
    assert sorted(n for batch in store.batches[1:] for n in batch) == list(range(1, 21))
    assert len(store.batches) == 2, "the twenty that queued up went in one transaction"


def test_a_failed_transaction_fails_its_waiters_and_the_writer_goes_on() -> None:
    store = Store()
    writer: GroupCommit[int] = GroupCommit(store.write, name="test")
    store.fail_next = True

    async def scenario() -> None:
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(writer.write(1), timeout=10)
        await asyncio.wait_for(writer.write(2), timeout=10)

    asyncio.run(scenario())
    writer.close()
    assert store.batches == [[2]], "the failed item is not written; the next one is"


def test_closing_writes_what_is_queued_and_stops_the_thread() -> None:
    store = Store()
    writer: GroupCommit[int] = GroupCommit(store.write, name="test-close")

    async def scenario() -> None:
        await asyncio.wait_for(writer.write(7), timeout=10)

    asyncio.run(scenario())
    writer.close()
    assert store.batches == [[7]]
    assert not any(t.name == "test-close" for t in threading.enumerate())
