"""Campaign definition files (``templates/campaigns/*.yaml``): parsing and validating them.

Each file becomes a ``CampaignDefinition``; every problem names the file and the field.
Syncing definitions into the database is ``outreach.campaigns.sync``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any

import yaml

from outreach.config import Settings
from outreach.errors import OutreachError
from outreach.models import Campaign, Category, Channel
from outreach.scheduling import StepTiming, Window, parse_clock, parse_duration, step_timing

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CAMPAIGN_FIELDS = {"slug", "name", "description", "category", "window", "no_weekends", "steps"}
STEP_FIELDS = {"key", "channel", "template", "day", "at", "after"}


class CampaignFileError(OutreachError):
    """A campaign file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class StepDefinition:
    key: str
    channel: str
    template: str
    day_offset: int | None = None
    at: str | None = None
    delay_seconds: int | None = None

    def timing(self) -> StepTiming:
        return step_timing(self.key, self.day_offset, self.at, self.delay_seconds)


@dataclass(frozen=True)
class CampaignDefinition:
    slug: str
    name: str
    description: str
    category: str
    window_start: str | None
    window_end: str | None
    no_weekends: bool | None
    steps: tuple[StepDefinition, ...]
    source: Path
    definition_hash: str

    def window(self) -> Window | None:
        if self.window_start and self.window_end:
            return Window(parse_clock(self.window_start), parse_clock(self.window_end))
        return None


def _problem(path: Path, where: str, what: str) -> CampaignFileError:
    return CampaignFileError(f"{path}: {where}: {what}")


def _text(path: Path, data: dict[str, Any], name: str, where: str, *, required: bool = True) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _problem(
            path, f"{where}{name}", "required text is missing" if value is None else "must be text"
        )
    return value.strip()


def _step(path: Path, index: int, raw: object, settings: Settings | None) -> StepDefinition:
    where = f"steps[{index}]"
    if not isinstance(raw, dict):
        raise _problem(path, where, "each step must be a mapping with key, channel, template and a time")
    unknown = set(raw) - STEP_FIELDS
    if unknown:
        raise _problem(path, where, f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    key = _text(path, raw, "key", f"{where}.")
    if not _KEY.match(key):
        raise _problem(path, f"{where}.key", "use lower-case letters, digits, - and _ (max 64)")
    channel = _text(path, raw, "channel", f"{where}.")
    if channel not in {str(c) for c in Channel}:
        raise _problem(path, f"{where}.channel", "must be sms or email")
    template = _text(path, raw, "template", f"{where}.")
    if settings is not None:
        _check_template_files(path, f"{where}.template", settings, template, channel)
    has_day, has_after = "day" in raw or "at" in raw, "after" in raw
    if has_day == has_after:
        raise _problem(path, where, 'give either day + at (e.g. day: 3, at: "10:00") or after (e.g. "+2h")')
    if has_after:
        try:
            delay = parse_duration(str(raw["after"]))
        except ValueError as exc:
            raise _problem(path, f"{where}.after", str(exc)) from None
        return StepDefinition(key, channel, template, delay_seconds=int(delay.total_seconds()))
    day = raw.get("day")
    if not isinstance(day, int) or isinstance(day, bool) or day < 0:
        raise _problem(path, f"{where}.day", "must be a whole number of days, 0 or more")
    at = raw.get("at")
    try:
        clock = parse_clock(str(at)) if at is not None else None
    except ValueError as exc:
        raise _problem(path, f"{where}.at", str(exc)) from None
    if clock is None:
        raise _problem(path, f"{where}.at", 'required with day (a local time like "10:00")')
    return StepDefinition(key, channel, template, day_offset=day, at=f"{clock:%H:%M}")


def _check_template_files(path: Path, where: str, settings: Settings, template: str, channel: str) -> None:
    root = Path(settings.templates_dir)
    needed = [f"{template}.txt"] + ([f"{template}.html"] if channel == Channel.EMAIL else [])
    for file in needed:
        if not (root / file).is_file():
            raise _problem(path, where, f"template file {file} not found under the templates directory")


def _window(path: Path, raw: object, settings: Settings | None) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict) or set(raw) != {"start", "end"}:
        raise _problem(
            path, "window", 'must be a mapping with start and end, e.g. {start: "09:00", end: "18:00"}'
        )
    try:
        start, end = parse_clock(str(raw["start"])), parse_clock(str(raw["end"]))
        window = Window(start, end)
    except ValueError as exc:
        raise _problem(path, "window", str(exc)) from None
    if settings is not None and (start < settings.send_window_start or end > settings.send_window_end):
        raise _problem(
            path,
            "window",
            f"may only narrow the global send window "
            f"({settings.send_window_start:%H:%M}-{settings.send_window_end:%H:%M})",
        )
    return f"{window.start:%H:%M}", f"{window.end:%H:%M}"


def parse_definition(path: Path, raw_bytes: bytes, settings: Settings | None = None) -> CampaignDefinition:
    """Validate one campaign file; errors name the file and the field, never guess."""
    try:
        data = yaml.safe_load(raw_bytes.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "file"
        raise _problem(path, where, "not valid YAML") from None
    if not isinstance(data, dict):
        raise _problem(path, "file", "must be a mapping with slug, name, category and steps")
    unknown = set(data) - CAMPAIGN_FIELDS
    if unknown:
        raise _problem(path, "file", f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    slug = _text(path, data, "slug", "")
    if not _SLUG.match(slug):
        raise _problem(path, "slug", "use lower-case letters, digits and - (max 64)")
    category = _text(path, data, "category", "")
    if category not in {str(c) for c in Category}:
        raise _problem(path, "category", "must be care, education or marketing")
    no_weekends = data.get("no_weekends")
    if no_weekends is not None and not isinstance(no_weekends, bool):
        raise _problem(path, "no_weekends", "must be true or false")
    window_start, window_end = _window(path, data.get("window"), settings)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _problem(path, "steps", "must be a non-empty list")
    steps = tuple(_step(path, i, raw, settings) for i, raw in enumerate(raw_steps))
    seen: set[str] = set()
    for i, step in enumerate(steps):
        if step.key in seen:
            raise _problem(path, f"steps[{i}].key", f"duplicate step key {step.key!r}")
        seen.add(step.key)
    return CampaignDefinition(
        slug=slug,
        name=_text(path, data, "name", ""),
        description=_text(path, data, "description", "", required=False),
        category=category,
        window_start=window_start,
        window_end=window_end,
        no_weekends=no_weekends,
        steps=steps,
        source=path,
        definition_hash=hashlib.sha256(raw_bytes).hexdigest(),
    )


def campaigns_dir(settings: Settings) -> Path:
    return Path(settings.templates_dir) / "campaigns"


def load_definitions(settings: Settings) -> list[CampaignDefinition]:
    """Every campaign file, validated. All problems are reported together, one per line."""
    directory = campaigns_dir(settings)
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]) if directory.is_dir() else []
    definitions: list[CampaignDefinition] = []
    problems: list[str] = []
    slugs: dict[str, Path] = {}
    for path in files:
        try:
            definition = parse_definition(path, path.read_bytes(), settings)
        except CampaignFileError as exc:
            problems.append(str(exc))
            continue
        if definition.slug in slugs:
            problems.append(f"{path}: slug: {definition.slug!r} is also used by {slugs[definition.slug]}")
            continue
        slugs[definition.slug] = path
        definitions.append(definition)
    if problems:
        raise CampaignFileError("\n".join(problems))
    return definitions


def window_label(campaign: Campaign, settings: Settings) -> str:
    start: time = settings.send_window_start
    end: time = settings.send_window_end
    if campaign.window_start and campaign.window_end:
        start, end = (
            max(start, parse_clock(campaign.window_start)),
            min(end, parse_clock(campaign.window_end)),
        )
    return f"{start:%H:%M}-{end:%H:%M}"
