"""The benchmarks' CPU accounting: per group, and the busiest process of a group (the one
PostgreSQL backend of a bulk write, whose seconds the import and enroll benches report)."""

from __future__ import annotations

import os
import time

import pytest

from bench.cpu import CpuSnapshot, busiest, process_seconds, spent

BEFORE = CpuSnapshot({1: ("postgres", 1.0), 2: ("postgres", 5.0), 3: ("web", 2.0), 6: ("web", 9.0)})
AFTER = CpuSnapshot(
    {
        1: ("postgres", 3.5),  # the backend doing the work: 2.5 s
        2: ("postgres", 5.5),  # the checkpointer, say: 0.5 s
        3: ("web", 2.5),
        4: ("postgres", 0.7),  # started in the window: counted whole
        6: ("postgres", 1.2),  # a reused pid, now another process: counted whole, not 1.2 - 9.0
    }
)


def test_cpu_per_group_counts_new_and_reused_processes_whole() -> None:
    used = spent(BEFORE, AFTER)
    assert used["postgres"] == pytest.approx(2.5 + 0.5 + 0.7 + 1.2)
    assert used["web"] == pytest.approx(0.5)


def test_the_busiest_process_of_a_group_is_the_one_that_did_the_work() -> None:
    assert busiest(BEFORE, AFTER, "postgres") == pytest.approx(2.5)
    assert busiest(BEFORE, AFTER, "web") == pytest.approx(0.5)
    assert busiest(BEFORE, AFTER, "redis") == 0.0


def test_one_process_seconds_are_read_from_proc_or_none_when_it_is_not_there() -> None:
    before = process_seconds(os.getpid())
    assert before is not None
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # burn CPU the reading must see (clock ticks: 10 ms)
        pass
    after = process_seconds(os.getpid())
    assert after is not None and after > before
    assert process_seconds(2**22 + 7) is None  # above Linux's largest pid
