"""How many web processes `outreach serve` runs when the deployment does not say."""

from __future__ import annotations

import pytest

from outreach.config import load_settings
from outreach.web.processes import process_count

POSTGRES = "postgresql+psycopg://outreach@db/outreach"


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 1), (4, 2), (8, 4), (32, 4)])
def test_postgresql_gets_half_the_cores_up_to_four(cpus: int, expected: int) -> None:
    assert process_count(load_settings(database_url=POSTGRES), cpus=cpus) == expected


def test_sqlite_gets_one_process_and_an_explicit_count_wins() -> None:
    assert process_count(load_settings(database_url="sqlite:///outreach.sqlite"), cpus=16) == 1
    assert process_count(load_settings(database_url=POSTGRES, web_workers=6), cpus=2) == 6
    assert process_count(load_settings(database_url="sqlite:///x.sqlite", web_workers=2), cpus=2) == 2
