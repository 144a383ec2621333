"""Control characters at the edges: named for a person, stripped where text is kept."""

from __future__ import annotations

import pytest

from outreach.text import control_character, control_problem, strip_control


@pytest.mark.parametrize(
    ("value", "multiline", "named"),
    [
        ("Ana\x00", False, "NUL"),
        ("\x1b[2JAna", False, "ESC"),
        ("Ana\x7f", False, "DEL"),
        ("two\nlines", False, "line break"),
        ("two\nlines\r\n", True, None),
        ("tab\tis fine", False, None),
        ("lone \ud800 surrogate", True, "U+D800"),
        ("bell\x07", True, "U+0007"),
        ("José 😀", False, None),
    ],
)
def test_control_characters_are_named_for_a_person(value: str, multiline: bool, named: str | None) -> None:
    assert control_character(value, multiline=multiline) == named


def test_stripping_keeps_line_breaks_only_where_text_spans_lines() -> None:
    assert strip_control("I feel\x00 low\r\ntoday\x1b", multiline=True) == "I feel low\r\ntoday"
    assert strip_control("+1510\n555\x000101") == "+15105550101"


def test_the_problem_names_the_field_never_the_value() -> None:
    problem = control_problem("first_name", "Secret\x00Name")
    assert problem == "first_name contains a control character (NUL)"
    assert control_problem("first_name", "Ana") is None
