"""GOV.UK-style form errors: a summary at the top linking to each field, values kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

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
