"""CPU seconds spent by each part of the system over a measured window, read from /proc.

The delivery pipeline is CPU-bound on two cores, so "where does a message's CPU go" is the
question every throughput change has to answer. Linux only; elsewhere the figures are empty.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# Group name and a test on a process's command line, first match wins.
GROUPS: tuple[tuple[str, str], ...] = (
    ("workers", "celery -A worker worker"),
    ("beat", "celery -A worker beat"),
    ("sandbox", " sandbox --host"),
    ("web", "outreach.cli.app serve"),
    ("web", "bench.api_server"),
    ("postgres", "postgres"),
    ("redis", "redis-server"),
)


@dataclass(frozen=True)
class CpuSnapshot:
    seconds: Mapping[int, tuple[str, float]]  # pid -> (group, CPU seconds so far)


def _group(cmdline: str) -> str | None:
    for name, marker in GROUPS:
        if marker in cmdline:
            return name
    return None


def _stat_seconds(stat: str) -> float:
    """utime + stime from a /proc/<pid>/stat line."""
    # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float | None:
    """CPU seconds so far of one process; None when /proc does not show it (a server on
    another machine, or not Linux)."""
    try:
        return _stat_seconds((PROC / str(pid) / "stat").read_text())
    except OSError:
        return None


def snapshot() -> CpuSnapshot:
    seconds: dict[int, tuple[str, float]] = {}
    if not PROC.is_dir():
        return CpuSnapshot(seconds)
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        group = _group(cmdline)
        if group is None:
            continue
        seconds[int(entry.name)] = (group, _stat_seconds(stat))
    return CpuSnapshot(seconds)


def spent(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds per group between two snapshots (processes started in between count whole)."""
    totals: dict[str, float] = {}
    for pid, (group, _seconds) in after.seconds.items():
        totals[group] = totals.get(group, 0.0) + _used(before, after, pid)
    return totals


def _used(before: CpuSnapshot, after: CpuSnapshot, pid: int) -> float:
    group, seconds = after.seconds[pid]
    earlier = before.seconds.get(pid)
    # A pid seen before in another group is a new process under a reused number: count it whole.
    start = earlier[1] if earlier is not None and earlier[0] == group else 0.0
    return max(seconds - start, 0.0)


def own_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (an import's validation
    workers): the client's side of a benchmark run in-process."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def busiest(before: CpuSnapshot, after: CpuSnapshot, group: str) -> float:
    """CPU seconds of the group's busiest process between two snapshots: for PostgreSQL, the
    backend of a one-transaction bulk write, which no second core can help."""
    used = [_used(before, after, pid) for pid, (name, _seconds) in after.seconds.items() if name == group]
    return max(used, default=0.0)
