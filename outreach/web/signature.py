"""Twilio webhook signatures, checked against the public URL Twilio called.

Behind a TLS-terminating proxy the app sees ``http://internal:8000/...`` while Twilio signed
``https://clinic.example.org/...``; so the URL is rebuilt from OUTREACH_PUBLIC_BASE_URL plus
the request's path and raw query string, never taken from the request as seen here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import unquote_plus

from starlette.datastructures import UploadFile
from starlette.requests import Request
from twilio.request_validator import RequestValidator

from outreach.config import Settings
from outreach.ops import metrics

SIGNATURE_HEADER = "X-Twilio-Signature"
URLENCODED = "application/x-www-form-urlencoded"
# Starlette's own cap on a form's fields.
MAX_FIELDS = 1000


class UnreadableForm(ValueError):
    """The body is not a form we can read (malformed encoding, a file where text belongs)."""


async def signed_form(request: Request) -> dict[str, list[str]]:
    """The posted form as Twilio signed it: every value of every key, in order.

    Raises ``UnreadableForm`` (the webhooks answer 400) rather than letting a parser error
    become a 500. The body's size was already capped by ``outreach.web.limits``.
    """
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() == URLENCODED:
        return _urlencoded(await request.body())
    try:
        raw = await request.form()
    except Exception as exc:  # python-multipart and Starlette raise several types for junk
        raise UnreadableForm("the request body is not a readable form") from exc
    form: dict[str, list[str]] = {}
    for key, value in raw.multi_items():
        if isinstance(value, UploadFile):
            raise UnreadableForm("the form holds a file upload where text belongs")
        form.setdefault(key, []).append(value)
    return form


def _urlencoded(body: bytes) -> dict[str, list[str]]:
    """What Starlette's form parser makes of a urlencoded body (fields split on "&", empty ones
    skipped, a field without "=" has an empty value, bytes read as Latin-1 and then
    percent-decoded as UTF-8), in a few string operations instead of a callback a byte range:
    the parser was a tenth of a webhook's cost."""
    form: dict[str, list[str]] = {}
    fields = [field for field in body.decode("latin-1").split("&") if field]
    if len(fields) > MAX_FIELDS:
        raise UnreadableForm(f"the form has more than {MAX_FIELDS} fields")
    for field in fields:
        name, _, value = field.partition("=")
        form.setdefault(unquote_plus(name), []).append(unquote_plus(value))
    return form


def public_url(settings: Settings, request: Request) -> str:
    url = settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


def is_signed_by_twilio(settings: Settings, request: Request, form: Mapping[str, Sequence[str]]) -> bool:
    signature = request.headers.get(SIGNATURE_HEADER)
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    # The validator compares in constant time and accepts the URL with or without the port.
    valid = bool(signature) and validator.validate(public_url(settings, request), _MultiDict(form), signature)
    if not valid:
        metrics.SIGNATURE_FAILURES.labels(request.url.path.rsplit("/", 1)[-1]).inc()
    return bool(valid)


class _MultiDict(dict[str, str]):
    """What RequestValidator expects of a form: ``getlist`` for repeated keys."""

    def __init__(self, form: Mapping[str, Sequence[str]]) -> None:
        super().__init__({key: values[-1] for key, values in form.items() if values})
        self._lists = {key: list(values) for key, values in form.items()}

    def getlist(self, key: str) -> list[str]:
        return self._lists.get(key, [])
