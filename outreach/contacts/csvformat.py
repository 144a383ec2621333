"""The contacts CSV format: columns, header matching, consent cells and one row's validation.

Shared by import and export so the two cannot drift apart. ``validate_row`` is pure and
picklable-friendly: the importer runs it in worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import NamedTuple, TypeVar

from outreach.contacts.fields import (
    DEFAULT_LANGUAGE,
    FieldError,
    normalize_checked_email,
    normalize_checked_external_id,
    normalize_checked_name,
    normalize_checked_phone,
    normalize_language,
    normalize_tags,
    normalize_timezone,
    split_list,
    zone_from_phone,
)
from outreach.models import Category
from outreach.text import control_character, control_problem

COLUMNS = (
    "external_id",
    "first_name",
    "last_name",
    "phone",
    "email",
    "timezone",
    "language",
    "tags",
    "sms_consent",
    "email_consent",
)
CONSENT_COLUMNS = {"sms_consent": "sms", "email_consent": "email"}
ALL_CATEGORIES = tuple(str(c) for c in Category)
# "yes" is consent to care and education messages only: marketing always needs its own word.
YES_CATEGORIES = (str(Category.CARE), str(Category.EDUCATION))
_YES = frozenset({"yes", "y", "true", "1"})
_NO = frozenset({"no", "n", "false", "0"})
# Spreadsheets run cells starting with these as formulas; export prefixes such cells with an
# apostrophe and import removes it again (OWASP's advice on CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# Cells where a line break is a separator people use (Alt+Enter in a spreadsheet); elsewhere
# it is junk, like every other control character.
MULTILINE_COLUMNS = frozenset({"tags"})

T = TypeVar("T")

GRANT = "granted"
REVOKE = "revoked"


class ConsentCell(NamedTuple):
    """What one consent cell asks for: grant these categories, or revoke every category."""

    state: str
    categories: tuple[str, ...]
    text: str  # the cell as written, trimmed: it is the evidence's wording


class ContactRow(NamedTuple):
    """One accepted CSV row, normalised. ``None`` means the cell was blank."""

    line: int
    external_id: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    email: str | None
    timezone: str | None  # given in the file
    derived_timezone: str | None  # from the phone, when unambiguous
    language: str | None
    tags: tuple[str, ...] | None
    sms_consent: ConsentCell | None
    email_consent: ConsentCell | None
    # Phone (else email) plus name, ignoring case: how a row without a known external_id
    # finds its contact. Computed once, in the worker that validates the row.
    key: tuple[str, str, str] | None

    def consent(self, channel: str) -> ConsentCell | None:
        return self.sms_consent if channel == "sms" else self.email_consent


class RowError(NamedTuple):
    line: int
    reason: str


def header_key(name: str) -> str:
    """Header names match ignoring case, spaces, underscores and hyphens: "First Name" = first_name."""
    return "".join(ch for ch in name.casefold() if ch not in " _-\t")


_KNOWN = {header_key(c): c for c in COLUMNS}


class Header(NamedTuple):
    positions: dict[str, int]  # column name -> index in each row
    ignored: list[str]  # header cells that are not ours
    width: int


class HeaderError(ValueError):
    pass


def locate_columns(cells: Sequence[str], known: dict[str, str]) -> tuple[dict[str, int], list[str]]:
    """Where each known column is (``known`` maps header_key -> column name), and the header
    cells that are not ours. Shared by every CSV importer."""
    positions: dict[str, int] = {}
    ignored: list[str] = []
    for index, cell in enumerate(cells):
        column = known.get(header_key(cell))
        if column is None:
            if cell.strip():
                ignored.append(cell.strip())
            continue
        if column in positions:
            raise HeaderError(f"column {column} appears twice in the header")
        positions[column] = index
    return positions, ignored


def parse_header(cells: Sequence[str]) -> Header:
    positions, ignored = locate_columns(cells, _KNOWN)
    if "phone" not in positions and "email" not in positions:
        if len(cells) == 1 and any(sep in cells[0] for sep in ";\t|"):
            raise HeaderError("the file is not comma-separated (save it as CSV, comma delimited)")
        raise HeaderError("the header has no phone or email column")
    return Header(positions, ignored, len(cells))


def unescape_cell(cell: str) -> str:
    if len(cell) > 1 and cell[0] == "'" and cell[1] in FORMULA_STARTS:
        return cell[1:]
    return cell


def escape_cell(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


@lru_cache(maxsize=1024)
def parse_tags_cell(cell: str) -> tuple[str, ...]:
    """Cached like consent cells: a file repeats a few tag combinations many times."""
    return normalize_tags(split_list(cell))


@lru_cache(maxsize=1024)
def parse_consent_cell(cell: str, column: str) -> ConsentCell | None:
    """Blank: no change. yes/no (true/false, y/n, 1/0), or a ``;``-list of categories.

    Cached: a file holds a handful of distinct cells, and handing back the same object for
    the same cell also lets a chunk of rows pickle (to and from worker processes) compactly."""
    text = cell.strip()
    if not text:
        return None
    words = [w.casefold() for w in split_list(text)]
    if len(words) == 1 and words[0] in _NO:
        return ConsentCell(REVOKE, ALL_CATEGORIES, text)
    granted: set[str] = set()
    for word in words:
        if word in _YES:
            granted.update(YES_CATEGORIES)
        elif word in ALL_CATEGORIES:
            granted.add(word)
        else:
            raise FieldError(
                f"unknown {column} value (use yes, no, or categories "
                f"{', '.join(ALL_CATEGORIES)} separated by ;)"
            )
    return ConsentCell(GRANT, tuple(c for c in ALL_CATEGORIES if c in granted), text)


def _field(values: dict[str, str], column: str, check: Callable[[str], T], problems: list[str]) -> T | None:
    raw = values.get(column, "")
    if not raw:
        return None
    try:
        return check(raw)
    except FieldError as exc:
        problems.append(str(exc))
        return None


# Checks made once per row (a module-level partial costs less than a lambda made per row).
_FIRST_NAME = partial(normalize_checked_name, field="first_name")
_LAST_NAME = partial(normalize_checked_name, field="last_name")
_SMS_CONSENT = partial(parse_consent_cell, column="sms_consent")
_EMAIL_CONSENT = partial(parse_consent_cell, column="email_consent")


def validate_row(line: int, cells: Sequence[str], header: Header) -> ContactRow | RowError:
    """Normalise one data row, or say every reason it cannot go in."""
    count = len(cells)
    if count > header.width and any(c.strip() for c in cells[header.width :]):
        return RowError(line, f"{count} fields, but the header has {header.width}")
    problems: list[str] = []
    values = {
        column: unescape_cell(cells[index]).strip() if index < count else ""
        for column, index in header.positions.items()
    }
    blanked: set[str] = set()
    # One search of the whole row: almost every row has no control character at all, and the
    # one-line test refuses everything the multi-line one does, so a clean row is clean.
    if control_character(" ".join(values.values())) is not None:
        for column, value in values.items():
            problem = control_problem(column, value, multiline=column in MULTILINE_COLUMNS)
            if problem is not None:
                # Reported, not stored: PostgreSQL refuses NUL, and escapes would reach terminals.
                problems.append(problem)
                values[column] = ""
                blanked.add(column)

    external_id = _field(values, "external_id", normalize_checked_external_id, problems)
    first_name = _field(values, "first_name", _FIRST_NAME, problems)
    last_name = _field(values, "last_name", _LAST_NAME, problems)
    phone = _field(values, "phone", normalize_checked_phone, problems)
    email = _field(values, "email", normalize_checked_email, problems)
    timezone = _field(values, "timezone", normalize_timezone, problems)
    language = _field(values, "language", normalize_language, problems)
    tags = _field(values, "tags", parse_tags_cell, problems)
    sms = _field(values, "sms_consent", _SMS_CONSENT, problems)
    mail = _field(values, "email_consent", _EMAIL_CONSENT, problems)
    if not values.get("phone") and not values.get("email") and not blanked & {"phone", "email"}:
        problems.append("no phone and no email")
    if problems:
        return RowError(line, "; ".join(problems))
    e164 = phone.e164 if phone else None
    return ContactRow(
        line=line,
        external_id=external_id,
        first_name=first_name,
        last_name=last_name,
        phone=e164,
        email=email,
        timezone=timezone,
        derived_timezone=zone_from_phone(phone),
        language=language,
        tags=tags,
        sms_consent=sms,
        email_consent=mail,
        key=match_key(e164 or email, first_name, last_name),
    )


def match_key(
    address: str | None, first_name: str | None, last_name: str | None
) -> tuple[str, str, str] | None:
    if address is None:
        return None
    return (address, (first_name or "").casefold(), (last_name or "").casefold())


def consent_cell_for(states: dict[str, str]) -> str:
    """The export cell for one channel's current states (category -> granted/revoked/none)."""
    granted = [c for c in ALL_CATEGORIES if states.get(c) == GRANT]
    if granted:
        return ";".join(granted)
    if any(states.get(c) == REVOKE for c in ALL_CATEGORIES):
        return "no"
    return ""


__all__ = [
    "COLUMNS",
    "CONSENT_COLUMNS",
    "DEFAULT_LANGUAGE",
    "ConsentCell",
    "ContactRow",
    "Header",
    "HeaderError",
    "RowError",
    "consent_cell_for",
    "escape_cell",
    "parse_consent_cell",
    "parse_header",
    "validate_row",
]
