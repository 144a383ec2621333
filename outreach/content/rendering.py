"""Jinja templates for SMS and email, rendered in the sandbox with StrictUndefined.

Layout of ``settings.templates_dir`` (names are paths without extension):

* SMS ``sms/<name>.txt`` — the body.
* Email ``email/<name>.txt`` (plain-text part; its front matter carries ``subject``) and
  ``email/<name>.html`` (HTML part, autoescaped). Both are wrapped in the one base layout
  (``email/_layout.txt`` / ``email/_layout.html``): clinic display name, postal address, and
  for education and marketing mail the unsubscribe link.

Any template may start with YAML front matter between ``---`` lines (see ``TemplateMeta``).
Staff may edit templates later, so everything renders in Jinja's sandbox, bounded in output
size and time (``outreach.content.bounded``); a missing variable is an error
(``StrictUndefined``), never a blank in a patient's message. Whatever goes wrong while
rendering is raised as ``RenderError``: one message fails with a reason, never the batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from jinja2 import (
    BaseLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.content.bounded import BoundedSandbox, RenderLimitExceeded, render_bounded
from outreach.content.segments import count_segments, smart_encode
from outreach.errors import OutreachError
from outreach.models import Appointment, Category, Channel, Contact, Message

UNSUBSCRIBABLE = frozenset({str(Category.EDUCATION), str(Category.MARKETING)})
LAYOUT_TEXT = "email/_layout.txt"
LAYOUT_HTML = "email/_layout.html"
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(\n|\Z)", re.DOTALL)
_US_E164 = re.compile(r"^\+1(\d{3})(\d{3})(\d{4})$")


class RenderError(OutreachError, ValueError):
    """A template is missing, malformed, or asks for a variable nobody supplied."""


@dataclass(frozen=True)
class TemplateMeta:
    """What a template declares about itself in its front matter.

    ``subject`` (email, required): the subject line, itself a Jinja template.
    ``reviewed_for``: treatment words a person reviewed this template for (the linter allows them).
    ``category``: care, education or marketing, when the path and campaigns do not say.
    ``variables``: extra variables the caller supplies in ``Message.context``, with sample values.
    """

    subject: str | None = None
    reviewed_for: frozenset[str] = frozenset()
    category: str | None = None
    description: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None
    encoding: str | None  # "GSM-7" or "UCS-2" for SMS; None for email
    segments: int | None  # SMS only
    non_gsm: tuple[str, ...] = ()


def split_front_matter(source: str) -> tuple[str | None, str]:
    """(front matter text or None, the rest)."""
    match = _FRONT_MATTER.match(source)
    if not match:
        return None, source
    return match.group(1) or "", source[match.end() :]


class FrontMatterLoader(FileSystemLoader):
    """Hides front matter from Jinja as a comment, so error line numbers still match the file."""

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        front, rest = split_front_matter(source)
        if front is not None:
            block = source[: len(source) - len(rest)]
            hidden = block.rstrip("\n").replace("#}", "# }")
            source = "{#" + hidden + "#}" + ("\n" if block.endswith("\n") else "") + rest
        return source, filename, uptodate


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith(".html")


@lru_cache(maxsize=8)
def environment(templates_dir: str) -> SandboxedEnvironment:
    loader: BaseLoader = FrontMatterLoader(templates_dir)
    return BoundedSandbox(
        loader=loader,
        undefined=StrictUndefined,
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=True,
    )


def template_files(name: str, channel: str) -> list[str]:
    if channel == Channel.SMS:
        return [f"{name}.txt"]
    if channel == Channel.EMAIL:
        return [f"{name}.txt", f"{name}.html"]
    raise RenderError(f"unknown channel {channel!r} for template {name}")


def load_meta(settings: Settings, name: str, channel: str) -> TemplateMeta:
    """The front matter of a template's main (``.txt``) file."""
    path = Path(settings.templates_dir) / template_files(name, channel)[0]
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RenderError(f"template {name} ({channel}): file {path.name} not found") from None
    front, _ = split_front_matter(source)
    return parse_meta(front or "", name)


def parse_meta(front: str, name: str) -> TemplateMeta:
    try:
        data = yaml.safe_load(front) if front.strip() else {}
    except yaml.YAMLError as exc:
        problem = exc.__class__.__name__
        raise RenderError(f"template {name}: front matter is not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise RenderError(f"template {name}: front matter must be a mapping of fields")
    unknown = set(data) - {"subject", "reviewed_for", "category", "description", "variables"}
    if unknown:
        raise RenderError(f"template {name}: unknown front matter field(s) {', '.join(sorted(unknown))}")
    reviewed = data.get("reviewed_for") or []
    if not isinstance(reviewed, list) or not all(isinstance(w, str) for w in reviewed):
        raise RenderError(f"template {name}: reviewed_for must be a list of words")
    variables = data.get("variables") or {}
    if isinstance(variables, list):
        variables = {str(v): f"sample {v}" for v in variables}
    if not isinstance(variables, dict):
        raise RenderError(f"template {name}: variables must be a mapping of name to sample value")
    category = data.get("category")
    if category is not None and category not in {str(c) for c in Category}:
        raise RenderError(f"template {name}: category must be care, education or marketing")
    subject = data.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise RenderError(f"template {name}: subject must be text")
    return TemplateMeta(
        subject=subject,
        reviewed_for=frozenset(w.lower() for w in reviewed),
        category=category,
        description=str(data.get("description") or ""),
        variables=dict(variables),
    )


def _render(env: SandboxedEnvironment, name: str, file: str, context: Mapping[str, Any]) -> str:
    try:
        return render_bounded(env.get_template(file), context)
    except UndefinedError as exc:
        raise RenderError(f"template {name}: undefined variable ({exc.message})") from None
    except TemplateNotFound as exc:
        raise RenderError(f"template {name}: file {exc.name} not found") from None
    except TemplateSyntaxError as exc:
        where = f"{file} line {exc.lineno}"
        raise RenderError(f"template {name}: syntax error in {where}: {exc.message}") from None
    except TemplateError as exc:
        raise RenderError(f"template {name}: {exc.__class__.__name__} in {file}") from None
    except RenderLimitExceeded as exc:
        raise RenderError(f"template {name}: {exc} in {file}") from None
    except Exception as exc:  # OverflowError, MemoryError, RecursionError, a filter's own bug
        raise RenderError(f"template {name}: {exc.__class__.__name__} in {file}") from None


def _render_string(env: SandboxedEnvironment, name: str, source: str, context: Mapping[str, Any]) -> str:
    try:
        return render_bounded(env.from_string(source), context)
    except UndefinedError as exc:
        raise RenderError(f"template {name}: undefined variable in subject ({exc.message})") from None
    except RenderLimitExceeded as exc:
        raise RenderError(f"template {name}: subject does not render ({exc})") from None
    except Exception as exc:  # as in _render
        raise RenderError(f"template {name}: subject does not render ({exc.__class__.__name__})") from None


def render_template(settings: Settings, name: str, channel: str, context: Mapping[str, Any]) -> Rendered:
    """Render one template. ``context`` must hold every variable it uses (see ``base_context``)."""
    env = environment(str(Path(settings.templates_dir).resolve()))
    files = template_files(name, channel)
    if channel == Channel.SMS:
        text = smart_encode(_render(env, name, files[0], context).strip())
        count = count_segments(text)
        return Rendered(None, text, None, count.encoding, count.segments, count.non_gsm)
    meta = load_meta(settings, name, channel)
    if not meta.subject:
        raise RenderError(f"template {name}: email front matter needs a subject")
    subject = " ".join(_render_string(env, name, meta.subject, context).split())
    layout = {
        **context,
        "subject": subject,
        "show_unsubscribe": (
            context.get("category") in UNSUBSCRIBABLE and bool(context.get("unsubscribe_url"))
        ),
    }
    text_body = _render(env, name, files[0], context).strip()
    html_body = _render(env, name, files[1], context).strip()
    text = _render(env, name, LAYOUT_TEXT, {**layout, "body": text_body}).strip() + "\n"
    html = _render(env, name, LAYOUT_HTML, {**layout, "body": Markup(html_body)})  # noqa: S704 (escaped by Jinja above)
    return Rendered(subject, text, html, None, None)


def display_phone(e164: str) -> str:
    match = _US_E164.match(e164)
    return f"{match.group(1)}-{match.group(2)}-{match.group(3)}" if match else e164


def clinic_context(settings: Settings) -> dict[str, Any]:
    return {
        "clinic_display_name": settings.clinic_display_name,
        "clinic_phone": display_phone(settings.clinic_phone),
        "clinic_address": settings.clinic_address,
        "clinic_email": settings.clinic_email,
    }


def appointment_context(appointment: Appointment) -> dict[str, Any]:
    local = appointment.starts_at.astimezone(ZoneInfo(appointment.timezone))
    return appointment_fields(local, appointment.type, appointment.location)


def appointment_fields(local: datetime, kind: str, location: str) -> dict[str, Any]:
    hour = local.hour % 12 or 12
    return {
        "appointment_date": f"{local:%a}, {local:%b} {local.day}",
        "appointment_weekday": f"{local:%A}",
        "appointment_day": f"{local:%B} {local.day}",
        "appointment_time": f"{hour}:{local:%M} {'AM' if local.hour < 12 else 'PM'}",
        "appointment_starts_at": local.isoformat(),
        "appointment_type": kind,
        "appointment_location": location,
    }


def base_context(
    settings: Settings,
    *,
    contact: Contact | None,
    category: str,
    appointment: Appointment | None = None,
    extra: Mapping[str, Any] | None = None,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """The variables every template may use. ``extra`` (``Message.context``) is applied last."""
    context: dict[str, Any] = {
        **clinic_context(settings),
        "category": category,
        "unsubscribe_url": unsubscribe_url,
    }
    if contact is not None:
        context["first_name"] = contact.first_name
    if appointment is not None:
        context.update(appointment_context(appointment))
    context.update(extra or {})
    return context


def render_message(
    session: Session, settings: Settings, message: Message, *, unsubscribe_url: str | None = None
) -> Rendered:
    """Render an outbox row at send time: contact, clinic, appointment and ``message.context``.

    Education and marketing email must carry an unsubscribe link (CAN-SPAM, RFC 8058): without
    ``unsubscribe_url`` it is refused rather than sent without one.
    """
    if not message.template:
        raise RenderError(f"message {message.id} has no template")
    if message.channel == Channel.EMAIL and message.category in UNSUBSCRIBABLE and not unsubscribe_url:
        raise RenderError(f"message {message.id}: {message.category} email needs an unsubscribe link")
    contact = session.get(Contact, message.contact_id) if message.contact_id is not None else None
    appointment = (
        session.get(Appointment, message.appointment_id) if message.appointment_id is not None else None
    )
    context = base_context(
        settings,
        contact=contact,
        category=message.category,
        appointment=appointment,
        extra=message.context or {},
        unsubscribe_url=unsubscribe_url,
    )
    return render_template(settings, message.template, message.channel, context)
