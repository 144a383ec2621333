"""Reminder policies: one YAML file per appointment type under ``templates/reminders/``.

The set of files *is* the set of appointment types the clinic offers (consultation, infusion,
booster, follow-up in the sample content); adding a file adds a type. Format (see
docs/appointments.md for the full description)::

    type: infusion                # the appointment type this file governs (= file name)
    name: Infusion visit
    default_duration_minutes: 120
    series_gap_days: 7            # visits this close together form a series (combining rules)
    context: {fasting_hours: 6}   # extra template variables for every message of this type
    steps:
      - key: booked               # stable: part of the idempotency key
        channel: sms              # sms | email
        template: appointments/booked
        at: booking               # booking | "day -1 at 10:00" | "-2h" | "+1d" (from the start)
        asks_confirmation: true   # the message says "Reply 1 to confirm, 2 to reschedule"
      - key: checkin
        channel: sms
        template: appointments/checkin
        at: day 1 at 10:00
        after: completed          # post-visit: materialised when staff mark the visit so
    notices:                      # one-off messages for changes (optional)
      rescheduled: {channel: sms, template: appointments/rescheduled, asks_confirmation: true}
      cancelled: {channel: sms, template: appointments/cancelled}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from outreach.errors import OutreachError
from outreach.models import AppointmentStatus, Channel
from outreach.scheduling import parse_clock, parse_duration

POLICY_DIR = "reminders"
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TYPE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_DAY_AT = re.compile(r"^day\s+([+-]?\d+)\s+at\s+(\S+)$")
_OFFSET = re.compile(r"^([+-])\s*(.+)$")
POST_VISIT_OUTCOMES = frozenset({str(AppointmentStatus.COMPLETED), str(AppointmentStatus.NO_SHOW)})
NOTICE_KINDS = frozenset({"rescheduled", "cancelled"})
_STEP_FIELDS = frozenset(
    {
        "key",
        "channel",
        "template",
        "at",
        "after",
        "asks_confirmation",
        "attach_ics",
        "once_per_series",
        "quiet_on_other_visit_days",
        "carries_next_visit",
        "context",
    }
)
_POLICY_FIELDS = frozenset(
    {
        "type",
        "name",
        "description",
        "default_duration_minutes",
        "series_gap_days",
        "context",
        "steps",
        "notices",
    }
)


class PolicyError(OutreachError):
    """A reminder policy file is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class StepTime:
    """When a step is due, relative to the appointment: exactly one form is set.

    ``at_booking``: when the visit is booked (or rescheduled). ``day_offset``/``clock``: a
    wall-clock time on the visit's local date plus N days, in the recipient's zone, so DST
    never moves it. ``delay``: elapsed time from the start (negative = before).
    """

    at_booking: bool = False
    day_offset: int | None = None
    clock: time | None = None
    delay: timedelta | None = None

    @classmethod
    def parse(cls, raw: object) -> StepTime:
        text = " ".join(str(raw).split()).lower() if raw is not None else ""
        if text == "booking":
            return cls(at_booking=True)
        day = _DAY_AT.match(text)
        if day:
            return cls(day_offset=int(day.group(1)), clock=parse_clock(day.group(2)))
        offset = _OFFSET.match(text)
        if offset:
            amount = parse_duration(offset.group(2))
            return cls(delay=-amount if offset.group(1) == "-" else amount)
        raise ValueError('expected "booking", "day -1 at 10:00", "-2h" or "+1d"')


@dataclass(frozen=True)
class Step:
    key: str
    channel: str
    template: str
    time: StepTime
    position: int
    # None: before the visit. "completed" / "no_show": materialised when staff record that.
    after: str | None = None
    asks_confirmation: bool = False
    attach_ics: bool = False
    # Sent once for a series of visits (the first one), listing all of them (combining rule 1).
    once_per_series: bool = False
    # Not sent on a local day when the patient has another visit (combining rule 2).
    quiet_on_other_visit_days: bool = False
    # Mentions the patient's next visit when it is in the same series (combining rule 2).
    carries_next_visit: bool = False
    context: Mapping[str, Any] = field(default_factory=dict)
    # A one-off notice about a change (rescheduled, cancelled), not a step of the sequence.
    notice: bool = False


@dataclass(frozen=True)
class ReminderPolicy:
    type: str
    name: str
    steps: tuple[Step, ...]
    notices: Mapping[str, Step]
    default_duration_minutes: int = 60
    series_gap_days: int = 7
    context: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def pre_visit(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.after is None and not s.time.at_booking)

    @property
    def at_booking(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.after is None and s.time.at_booking)

    def post_visit(self, outcome: str) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.after == outcome)

    def step(self, key: str) -> Step | None:
        return next((s for s in self.steps if s.key == key), self.notices.get(key))


def _flag(data: Mapping[str, Any], name: str, where: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise PolicyError(f"{where}: {name} must be true or false")
    return value


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a mapping")
    return {str(k): v for k, v in value.items()}


def _parse_step(data: object, position: int, where: str, *, notice: bool = False) -> Step:
    if not isinstance(data, dict):
        raise PolicyError(f"{where} must be a mapping")
    unknown = set(data) - _STEP_FIELDS
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    key = str(data.get("key", "")) if not notice else str(data.get("key", where.rsplit(" ", 1)[-1]))
    if not _KEY.match(key):
        raise PolicyError(f"{where}: key must be lower-case letters, digits and _ (max 32)")
    channel = data.get("channel")
    if channel not in {str(c) for c in Channel}:
        raise PolicyError(f"{where}: channel must be sms or email")
    template = data.get("template")
    if not isinstance(template, str) or not template.strip():
        raise PolicyError(f"{where}: template is required")
    try:
        when = StepTime(at_booking=True) if notice else StepTime.parse(data.get("at"))
    except ValueError as exc:
        raise PolicyError(f"{where}: at: {exc}") from None
    after = data.get("after")
    if after is not None and after not in POST_VISIT_OUTCOMES:
        raise PolicyError(f"{where}: after must be completed or no_show")
    if after is not None and when.at_booking:
        raise PolicyError(f"{where}: a post-visit step cannot be due at booking")
    return Step(
        key=key,
        channel=str(channel),
        template=template.strip(),
        time=when,
        position=position,
        after=after,
        asks_confirmation=_flag(data, "asks_confirmation", where),
        attach_ics=_flag(data, "attach_ics", where),
        once_per_series=_flag(data, "once_per_series", where),
        quiet_on_other_visit_days=_flag(data, "quiet_on_other_visit_days", where),
        carries_next_visit=_flag(data, "carries_next_visit", where),
        context=_mapping(data.get("context"), f"{where}: context"),
        notice=notice,
    )


def parse_policy(data: object, name: str) -> ReminderPolicy:
    """Validate one file's content (``name`` is the file name, for messages and the type)."""
    if not isinstance(data, dict):
        raise PolicyError(f"{name}: the file must be a mapping of fields")
    unknown = set(data) - _POLICY_FIELDS
    if unknown:
        raise PolicyError(f"{name}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    kind = str(data.get("type", ""))
    if not _TYPE.match(kind):
        raise PolicyError(f"{name}: type must be lower-case letters, digits, - and _")
    if Path(name).stem != kind:
        raise PolicyError(f"{name}: type {kind} must match the file name")
    raw_steps = data.get("steps") or []
    if not isinstance(raw_steps, list):
        raise PolicyError(f"{name}: steps must be a list")
    steps = tuple(_parse_step(s, i, f"{name} step {i + 1}") for i, s in enumerate(raw_steps))
    keys = [s.key for s in steps]
    if len(set(keys)) != len(keys):
        raise PolicyError(f"{name}: step keys must be unique")
    notices: dict[str, Step] = {}
    for notice_kind, raw in _mapping(data.get("notices"), f"{name}: notices").items():
        if notice_kind not in NOTICE_KINDS:
            raise PolicyError(f"{name}: notices may be {', '.join(sorted(NOTICE_KINDS))}")
        notices[notice_kind] = _parse_step(
            {"key": notice_kind, **_mapping(raw, f"{name} notice {notice_kind}")},
            len(steps) + len(notices),
            f"{name} notice {notice_kind}",
            notice=True,
        )
    duration = data.get("default_duration_minutes", 60)
    gap = data.get("series_gap_days", 7)
    if not isinstance(duration, int) or not 5 <= duration <= 24 * 60:
        raise PolicyError(f"{name}: default_duration_minutes must be a whole number from 5 to 1440")
    if not isinstance(gap, int) or not 0 <= gap <= 60:
        raise PolicyError(f"{name}: series_gap_days must be a whole number from 0 to 60")
    return ReminderPolicy(
        type=kind,
        name=str(data.get("name") or kind),
        description=str(data.get("description") or ""),
        steps=steps,
        notices=notices,
        default_duration_minutes=duration,
        series_gap_days=gap,
        context=_mapping(data.get("context"), f"{name}: context"),
    )


def load_policies(templates_dir: Path | str) -> dict[str, ReminderPolicy]:
    """Every policy file, by appointment type. Files are re-read when they change.

    Called several times per booking, so the check is one directory listing and one stat per
    file (pathlib's glob cost more than the rest of reading the policies from the cache)."""
    try:
        with os.scandir(os.path.join(templates_dir, POLICY_DIR)) as entries:
            found = [
                (entry.name, entry.path, entry.stat().st_mtime_ns)
                for entry in entries
                if entry.name.endswith((".yaml", ".yml")) and entry.is_file()
            ]
    except FileNotFoundError:
        found = []
    # .yaml files, then .yml, each by name: a type defined twice takes the later file's policy.
    found.sort(key=lambda item: (item[0].endswith(".yml"), item[0]))
    return dict(_load(tuple((path, mtime) for _name, path, mtime in found)))


@lru_cache(maxsize=4)
def _load(stamp: tuple[tuple[str, int], ...]) -> tuple[tuple[str, ReminderPolicy], ...]:
    policies: dict[str, ReminderPolicy] = {}
    for path_text, _ in stamp:
        path = Path(path_text)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise PolicyError(f"{path.name}: not valid YAML ({exc.__class__.__name__})") from None
        policy = parse_policy(data, path.name)
        policies[policy.type] = policy
    return tuple(sorted(policies.items()))


def policy_for(templates_dir: Path | str, appointment_type: str) -> ReminderPolicy:
    policies = load_policies(templates_dir)
    policy = policies.get(appointment_type)
    if policy is None:
        known = ", ".join(sorted(policies)) or "none configured"
        raise PolicyError(f"unknown appointment type {appointment_type!r} (known: {known})")
    return policy
