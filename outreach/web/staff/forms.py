"""GOV.UK-style form errors: a summary at the top linking to each field, values kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi.responses import Response
from starlette.datastructures import FormData


@dataclass
class FormErrors:
    # field id -> message, in the order the fields appear.
    by_field: dict[str, str] = field(default_factory=dict)

    def add(self, field_id: str, message: str) -> None:
        self.by_field.setdefault(field_id, message)

    def __bool__(self) -> bool:
        return bool(self.by_field)


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def values(form: FormData) -> dict[str, str]:
    """What was typed, to fill the form again (the CSRF token is re-issued, not echoed)."""
    return {key: value for key, value in form.items() if isinstance(value, str) and key != "csrf_token"}


def query_of(filters: dict[str, str]) -> str:
    """The filters that are set, as a query string for paging and CSV links."""
    return urlencode({name: value for name, value in filters.items() if value})


def csv_download(text: str, filename: str) -> Response:
    return Response(
        text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


def day_range(
    zone: ZoneInfo, day_from: str, day_to: str, errors: FormErrors
) -> tuple[datetime | None, datetime | None]:
    """The ``day_from`` and ``day_to`` fields as instants: the first day's start, the day after
    the last day's start (so "until 12 June" includes 12 June), in the clinic's zone."""
    bounds: list[datetime | None] = []
    for field_id, raw, shift in (("day_from", day_from, 0), ("day_to", day_to, 1)):
        try:
            day = date.fromisoformat(raw) if raw else None
        except ValueError:
            errors.add(field_id, "Enter a date as year-month-day, for example 2026-06-10")
            day = None
        bounds.append(datetime.combine(day + timedelta(days=shift), time(0), tzinfo=zone) if day else None)
    return bounds[0], bounds[1]
