"""Headless Chromium, launched once per module for the browser tests; the processes' logs in
the report of a test that failed."""

from __future__ import annotations

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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A process-starting test that fails shows what its processes logged (in CI, the log files
    are gone with the machine): every ``*.log`` in its ``tmp_path``, a section each."""
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and isinstance(tmp_path, Path):
        for log in sorted(tmp_path.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines(keepends=True)
            text = "".join(line for line in lines if DEBUG_LINE not in line)
            report.sections.append((f"{log.name}, last {LOG_TAIL} characters but DEBUG", text[-LOG_TAIL:]))
