"""Control characters at the edges: what no field we store may hold.

PostgreSQL refuses NUL in text (and a lone surrogate cannot be encoded to UTF-8 at all), so such
a character reaching the database turns one bad field into a failed transaction; terminal
escapes in a name would redraw a staff member's screen. Every edge (CSV cells, webhook fields,
API and form fields) either rejects a field holding one, naming the field, or strips them.
Tab is allowed everywhere; line breaks only where the text may span lines (a message body).
"""

from __future__ import annotations

import re

# C0 controls and DEL, and lone surrogates (what a decoder with ``surrogateescape`` leaves).
_ONE_LINE = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_MULTI_LINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_NAMES = {"\x00": "NUL", "\x1b": "ESC", "\x7f": "DEL", "\n": "line break", "\r": "line break"}


def _pattern(multiline: bool) -> re.Pattern[str]:
    return _MULTI_LINE if multiline else _ONE_LINE


def control_character(value: str, *, multiline: bool = False) -> str | None:
    """The first character ``value`` may not hold, named for a person ("NUL", "U+001B"), or None."""
    found = _pattern(multiline).search(value)
    if found is None:
        return None
    char = found.group()
    return _NAMES.get(char, f"U+{ord(char):04X}")


def strip_control(value: str, *, multiline: bool = False) -> str:
    """``value`` without the characters ``control_character`` would name."""
    return _pattern(multiline).sub("", value)


def control_problem(field: str, value: str, *, multiline: bool = False) -> str | None:
    """"first_name contains a control character (NUL)", or None: the phrase every edge reports."""
    name = control_character(value, multiline=multiline)
    return None if name is None else f"{field} contains a control character ({name})"
