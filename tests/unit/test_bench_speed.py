"""The bench table's speed line: a run's figures placed in the machine's hour."""

from __future__ import annotations

from bench import speed


def test_the_speed_line_gives_each_timing_before_and_after_the_run() -> None:
    before = {"python_ms": 116.4, "postgres_ms": 119.0}
    line = speed.describe(before, {"python_ms": 184.2, "postgres_ms": 121.6})
    assert line.startswith("machine speed: fixed Python work 116 ms before, 184 after; ")
    assert "fixed PostgreSQL query 119 ms before, 122 after" in line


def test_a_timing_missing_on_either_side_is_said_to_be_not_measured() -> None:
    before = {"python_ms": 116.0, "postgres_ms": None}
    line = speed.describe(before, {"python_ms": 120.0, "postgres_ms": 118.0})
    assert "fixed PostgreSQL query not measured" in line
