"""Fixtures shared by the service-layer tests that drive the CLI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from outreach.cli import common


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The CLI on this test's database (it reads its settings from the environment once)."""
    monkeypatch.setenv("OUTREACH_DATABASE_URL", db_url)
    for cached in (common.settings, common.session_factory, common.clock):
        cached.cache_clear()
    yield CliRunner()
    common.session_factory().kw["bind"].dispose()
    for cached in (common.settings, common.session_factory, common.clock):
        cached.cache_clear()
