"""Headless Chromium, launched once per module for the browser tests; the processes' logs in
the report of a test that failed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Nothing the tests do not need: no GPU, no QUIC, no update or sync traffic leaving the machine.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (scripts/ensure-chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


# How much of each process's log a failed test's report shows: its last lines, where the
# failure usually is, without the DEBUG lines (beat's and the pool's fill a few thousand
# characters a second). The logs carry ids, never patient data: see tests/support/e2e.py.
LOG_TAIL = 12000
DEBUG_LINE = '"level": "debug"'
# The lines of a reply's path, looked for in the whole of each log: a text stored and processed,
# its urgent sends handed to the control queue (tasks.delivery.send_urgent names each task's id), and
# every line that names one of those tasks (the worker's "received" and "succeeded").
_ON_REPLY_PATH = re.compile(r"inbound|urgent", re.IGNORECASE)
_HANDED_AS = re.compile(r"handed to \S+ as task ([0-9a-f-]{36})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A process-starting test that fails shows what its processes logged (in CI, the log files
    are gone with the machine): every ``*.log`` in its ``tmp_path``, a section each, and where
    a log is longer than its section, that log's lines of the replies' path from the start."""
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if not (report.failed and isinstance(tmp_path, Path)):
        return
    logs = {log.name: log.read_text(errors="replace") for log in sorted(tmp_path.glob("*.log"))}
    handed = {task for text in logs.values() for task in _HANDED_AS.findall(text)}
    for name, whole in logs.items():
        lines = whole.splitlines(keepends=True)
        text = "".join(line for line in lines if DEBUG_LINE not in line)
        report.sections.append((f"{name}, last {LOG_TAIL} characters but DEBUG", text[-LOG_TAIL:]))
        if len(text) > LOG_TAIL:
            path = "".join(line for line in lines if DEBUG_LINE not in line and _on_reply_path(line, handed))
            if path:
                report.sections.append((f"{name}, the replies' lines from the start", path[:LOG_TAIL]))


def _on_reply_path(line: str, handed: set[str]) -> bool:
    return bool(_ON_REPLY_PATH.search(line)) or any(task in line for task in handed)
