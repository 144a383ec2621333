"""Twilio webhook signatures, checked against the public URL Twilio called.

Behind a TLS-terminating proxy the app sees ``http://internal:8000/...`` while Twilio signed
``https://clinic.example.org/...``; so the URL is rebuilt from OUTREACH_PUBLIC_BASE_URL plus
the request's path and raw query string, never taken from the request as seen here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.datastructures import UploadFile
from starlette.requests import Request
from twilio.request_validator import RequestValidator

from outreach.config import Settings
from outreach.ops import metrics

SIGNATURE_HEADER = "X-Twilio-Signature"


class UnreadableForm(ValueError):
    """The body is not a form we can read (malformed encoding, a file where text belongs)."""


async def signed_form(request: Request) -> dict[str, list[str]]:
    """The posted form as Twilio signed it: every value of every key, in order.

    Raises ``UnreadableForm`` (the webhooks answer 400) rather than letting a parser error
    become a 500. The body's size was already capped by ``outreach.web.limits``.
    """
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
