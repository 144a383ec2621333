"""`outreach templates check`: render every template with sample data and enforce the content rules.

Errors (the check fails):

* a template that does not render: syntax error, undefined variable, missing file or subject;
* a **care** SMS over one segment or with characters outside GSM-7;
* a treatment or diagnosis word (``Settings.treatment_words``) in an SMS body or an email
  subject, unless the template's front matter lists it in ``reviewed_for``;
* any template asking the patient to reply CANCEL or YES (carrier opt-out / opt-in words);
* an education/marketing email whose layout lost the postal address or unsubscribe link;
* a campaign file that does not validate.

Warnings: education/marketing SMS over one segment, non-GSM, or without a STOP line;
treatment words in an email body not declared in ``reviewed_for``; a campaign step the
window or frequency cap moves off its nominal day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from markupsafe import escape

from outreach.campaigns.files import CampaignDefinition, CampaignFileError, load_definitions
from outreach.config import Settings
from outreach.content.rendering import (
    UNSUBSCRIBABLE,
    Rendered,
    RenderError,
    TemplateMeta,
    appointment_fields,
    clinic_context,
    load_meta,
    render_template,
)
from outreach.content.segments import describe
from outreach.models import Category, Channel
from outreach.scheduling import FrequencyCap, SendPolicy, Window, local_day_of, plan_steps

Severity = Literal["error", "warning"]

SAMPLE_FIRST_NAME = "Anastasia-Marie"  # long on purpose: segment counts are worst-case-ish
SAMPLE_UNSUBSCRIBE_PATH = "/unsubscribe/SAMPLE-TOKEN-0123456789abcdefghijklmnopqrstuv"
SAMPLE_APPOINTMENT = datetime(2026, 9, 30, 10, 30)  # a Wednesday in September: the longest names

_ASKS_KEYWORD = re.compile(
    r"\b(?:reply|replying|text|texting|send|respond|answer)\b(?:\s+(?:with|back|us|to us))*"
    r"[\s:\"'“”‘’(]*\b(cancel|yes)\b",
    re.IGNORECASE,
)
_SHOUTED_KEYWORD = re.compile(r"\b(CANCEL|YES)\b")


@dataclass(frozen=True)
class Problem:
    template: str
    severity: Severity
    message: str


@dataclass
class TemplateCheck:
    name: str
    channel: str
    category: str
    subject: str | None = None
    encoding: str | None = None
    segments: int | None = None


@dataclass
class LintReport:
    checked: list[TemplateCheck] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "templates": [vars(c) for c in self.checked],
            "problems": [vars(p) for p in self.problems],
        }


def discover(settings: Settings) -> list[tuple[str, str]]:
    """(name, channel) of every template; files and folders starting with ``_`` are layouts."""
    root = Path(settings.templates_dir)
    found: list[tuple[str, str]] = []
    for channel in (Channel.SMS, Channel.EMAIL):
        base = root / str(channel)
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.txt")):
            relative = path.relative_to(root)
            if any(part.startswith("_") for part in relative.parts):
                continue
            found.append((relative.with_suffix("").as_posix(), str(channel)))
    return found


def sample_context(settings: Settings, meta: TemplateMeta, category: str) -> dict[str, Any]:
    context: dict[str, Any] = {
        **clinic_context(settings),
        "first_name": SAMPLE_FIRST_NAME,
        "category": category,
        "unsubscribe_url": settings.public_base_url.rstrip("/") + SAMPLE_UNSUBSCRIBE_PATH,
        **appointment_fields(
            SAMPLE_APPOINTMENT.replace(tzinfo=settings.clinic_zone), "consultation", "Suite 200"
        ),
    }
    context.update(meta.variables)
    return context


def category_of(name: str, meta: TemplateMeta, used_by: dict[str, set[str]]) -> str:
    """Front matter, else the campaigns using it (care wins: strictest), else the path, else care."""
    if meta.category:
        return meta.category
    categories = used_by.get(name, set())
    for candidate in (Category.CARE, Category.EDUCATION, Category.MARKETING):
        if str(candidate) in categories:
            return str(candidate)
    parts = name.split("/")
    for candidate in (Category.EDUCATION, Category.MARKETING):
        if str(candidate) in parts:
            return str(candidate)
    return str(Category.CARE)


def treatment_words_in(text: str, words: list[str], reviewed: frozenset[str]) -> list[str]:
    hits = []
    for word in words:
        if word.lower() in reviewed:
            continue
        if re.search(rf"(?<![a-z]){re.escape(word.lower())}(?![a-z])", text.lower()):
            hits.append(word)
    return hits


def keyword_requests(text: str) -> list[str]:
    found = {m.group(1).upper() for m in _ASKS_KEYWORD.finditer(text)}
    found |= {m.group(1) for m in _SHOUTED_KEYWORD.finditer(text)}
    return sorted(found)


def check_rendered(
    settings: Settings, name: str, channel: str, category: str, meta: TemplateMeta, rendered: Rendered
) -> list[Problem]:
    """The content rules for one rendered template (also used by `campaigns preview`)."""
    problems: list[Problem] = []

    def add(severity: Severity, message: str) -> None:
        problems.append(Problem(name, severity, message))

    words = settings.treatment_words
    for keyword in keyword_requests(" ".join(filter(None, [rendered.subject, rendered.text]))):
        add("error", f"asks the patient to reply {keyword} (a carrier opt-out/opt-in word); use digits")
    if channel == Channel.SMS:
        care = category == Category.CARE
        severity: Severity = "error" if care else "warning"
        if rendered.segments and rendered.segments > 1:
            add(
                severity,
                f"{category} SMS is {rendered.segments} segments ({rendered.encoding}); keep it to one",
            )
        if rendered.non_gsm:
            chars = ", ".join(describe(c) for c in rendered.non_gsm)
            add(severity, f"non-GSM character(s) {chars} switch the SMS to UCS-2")
        hits = treatment_words_in(rendered.text, words, meta.reviewed_for)
        if hits:
            add("error", f"treatment/diagnosis word(s) in SMS body: {', '.join(hits)} (not in reviewed_for)")
        if not care and "STOP" not in rendered.text:
            add("warning", "education/marketing SMS without a 'Reply STOP to opt out' line")
        return problems
    hits = treatment_words_in(rendered.subject or "", words, meta.reviewed_for)
    if hits:
        add("error", f"treatment/diagnosis word(s) in email subject: {', '.join(hits)} (not in reviewed_for)")
    body_hits = treatment_words_in(rendered.text, words, meta.reviewed_for)
    if body_hits:
        add(
            "warning",
            f"treatment/diagnosis word(s) in email body not in reviewed_for: {', '.join(body_hits)}",
        )
    html = rendered.html or ""
    if settings.clinic_address not in rendered.text or _escaped(settings.clinic_address) not in html:
        add("error", "email is missing the clinic's postal address (base layout)")
    if category in UNSUBSCRIBABLE and SAMPLE_UNSUBSCRIBE_PATH not in html + rendered.text:
        add("error", f"{category} email is missing the unsubscribe link (base layout)")
    return problems


def _escaped(text: str) -> str:
    return str(escape(text))


def check_templates(settings: Settings) -> LintReport:
    report = LintReport()
    definitions: list[CampaignDefinition] = []
    try:
        definitions = load_definitions(settings)
    except CampaignFileError as exc:
        for line in str(exc).splitlines():
            file, _, message = line.partition(": ")
            report.problems.append(Problem(f"campaigns/{Path(file).name}", "error", message))
    used_by: dict[str, set[str]] = {}
    for definition in definitions:
        for step in definition.steps:
            used_by.setdefault(step.template, set()).add(definition.category)
    for name, channel in discover(settings):
        try:
            meta = load_meta(settings, name, channel)
        except RenderError as exc:
            report.problems.append(Problem(name, "error", str(exc)))
            continue
        category = category_of(name, meta, used_by)
        check = TemplateCheck(name, channel, category)
        report.checked.append(check)
        try:
            rendered = render_template(settings, name, channel, sample_context(settings, meta, category))
        except RenderError as exc:
            report.problems.append(Problem(name, "error", str(exc)))
            continue
        check.subject, check.encoding, check.segments = rendered.subject, rendered.encoding, rendered.segments
        report.problems.extend(check_rendered(settings, name, channel, category, meta, rendered))
    for definition in definitions:
        report.problems.extend(_check_cadence(settings, definition))
    return report


def _check_cadence(settings: Settings, definition: CampaignDefinition) -> list[Problem]:
    """Warn when a step cannot keep its nominal day for a contact with no other messages."""
    window = Window(settings.send_window_start, settings.send_window_end)
    campaign_window = definition.window()
    if campaign_window is not None:
        window = window.narrowed_to(campaign_window)
    no_weekends = settings.no_weekends if definition.no_weekends is None else definition.no_weekends
    policy = SendPolicy(window, no_weekends)
    zone = settings.clinic_zone
    # A Monday at the opening of the window: the friendliest start a clinic would pick.
    start = datetime.combine(datetime(2026, 1, 5).date(), window.start, tzinfo=zone).astimezone(UTC)
    capped = definition.category in UNSUBSCRIBABLE
    cap = FrequencyCap(settings.cap_per_day, settings.cap_per_week) if capped else None
    timings = [s.timing() for s in definition.steps]
    due = plan_steps(timings, start, zone, policy, now=start, cap=cap)
    problems = []
    for timing in timings:
        nominal = local_day_of(max(timing.nominal(start, zone), start), zone)
        actual = local_day_of(due[timing.key], zone)
        if actual != nominal:
            days = (actual - nominal) // timedelta(days=1)
            problems.append(
                Problem(
                    f"campaigns/{definition.source.name}",
                    "warning",
                    f"step {timing.key} moves {days} day(s) later than written "
                    "(send window or frequency cap)",
                )
            )
    return problems
