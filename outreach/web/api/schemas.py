"""Field types shared by the API's request models.

``Text`` refuses control characters (NUL and the rest of C0 except tab and line breaks, DEL)
and lone surrogates, with a 422 naming the field: such text cannot be stored in PostgreSQL or
shown safely, and never comes from a person typing.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from outreach.web.api.core import ApiError, ErrorItem

_ALLOWED_CONTROLS = frozenset("\t\n\r")
# Row ids are 32-bit integers on both databases; a larger id is simply unknown, not an error.
MAX_ID = 2**31 - 1


def no_control_characters(value: str) -> str:
    for char in value:
        if char in _ALLOWED_CONTROLS:
            continue
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError("control characters are not allowed")
    return value


_ISO_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def iso_text(value: object) -> object:
    # Pydantic would take a bare number as a Unix time: an integration that sends one has a bug.
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE_TIME.match(value)):
        return value
    raise ValueError("expected an ISO-8601 date-time with an offset, e.g. 2026-06-12T10:00:00-07:00")


def plausible_year(value: datetime) -> datetime:
    # Far-off years overflow when converted between zones; no visit or query needs them.
    if not 1970 <= value.year <= 2200:
        raise ValueError("the year must be between 1970 and 2200")
    return value


Text = Annotated[str, AfterValidator(no_control_characters)]
Instant = Annotated[
    AwareDatetime,
    BeforeValidator(iso_text),
    AfterValidator(plausible_year),
    Field(description="ISO-8601 with an offset."),
]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class Model(BaseModel):
    """Request bodies: unknown fields are refused, so a misspelt field is not silently dropped.
    (Not pydantic's strict mode: FastAPI validates decoded JSON in Python mode, where strict
    would refuse enum values and ISO-8601 strings; booleans use ``StrictBool`` instead.)"""

    model_config = ConfigDict(extra="forbid")


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = raw.partition(":")
        if kind == "after" and number.isdigit() and int(number) <= MAX_ID:
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ApiError(
        422,
        "invalid input",
        errors=[ErrorItem(field="query.cursor", message="not a cursor this API returned")],
    )
