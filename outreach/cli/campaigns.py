"""`outreach campaigns sync|list|preview`, `outreach templates check`,
`outreach enroll|unenroll|pause|resume`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.table import Table

from outreach.campaigns import eligibility, lifecycle
from outreach.campaigns import sync as campaign_sync
from outreach.campaigns.enroll import enroll as enroll_contacts
from outreach.campaigns.overview import campaign_summaries
from outreach.campaigns.preview import preview as preview_steps
from outreach.cli import common
from outreach.cli.common import (
    JsonOption,
    console,
    err_console,
    handle_errors,
    print_json,
    settings,
    transaction,
    when,
)
from outreach.content.lint import check_templates
from outreach.errors import OutreachError

campaigns_app = typer.Typer(no_args_is_help=True, help="Campaign definitions (templates/campaigns/*.yaml).")
templates_app = typer.Typer(no_args_is_help=True, help="Message templates (templates/sms, templates/email).")

ContactsOption = Annotated[
    list[int] | None, typer.Option("--contact", help="Contact id (repeat for several).", show_default=False)
]
TagOption = Annotated[str | None, typer.Option("--tag", help="Every contact with this tag.")]


def parse_start(value: str | None, zone_name: str) -> datetime | None:
    """``YYYY-MM-DD HH:MM`` wall-clock in ``zone_name`` (the clinic's zone by default)."""
    if value is None:
        return None
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise OutreachError(f"--tz: unknown IANA time zone {zone_name!r}") from None
    try:
        naive = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M")
    except ValueError:
        raise OutreachError('--start: expected "YYYY-MM-DD HH:MM", e.g. "2026-03-02 09:00"') from None
    return naive.replace(tzinfo=zone)


@campaigns_app.command("sync")
@handle_errors
def sync(as_json: JsonOption = False) -> None:
    """Load every campaign file and templates/closures.yaml into the database."""
    with transaction() as session:
        report = campaign_sync.sync(session, settings(), common.now())
    if as_json:
        print_json(
            {
                "campaigns": [vars(c) for c in report.campaigns],
                "closures_added": report.closures_added,
                "closures_removed": report.closures_removed,
                "messages_moved": report.messages_moved,
            }
        )
        return
    for c in report.campaigns:
        details = []
        for label, keys in (
            ("added", c.steps_added),
            ("changed", c.steps_changed),
            ("removed", c.steps_removed),
        ):
            if keys and c.action != "created":
                details.append(f"{label} {', '.join(keys)}")
        if c.messages_cancelled or c.messages_created:
            details.append(f"{c.messages_cancelled} pending cancelled, {c.messages_created} materialised")
        console.print(
            f"{c.slug}: {c.action}" + (f" ({'; '.join(details)})" if details else ""), highlight=False
        )
    if report.closures_added or report.closures_removed:
        console.print(
            f"closures: {len(report.closures_added)} added, {len(report.closures_removed)} removed, "
            f"{report.messages_moved} scheduled message(s) moved off closed days",
            highlight=False,
        )


@campaigns_app.command("list")
@handle_errors
def list_(as_json: JsonOption = False) -> None:
    """Campaigns in the database with their steps and enrollment counts."""
    with transaction() as session:
        rows = campaign_summaries(session, settings())
    if as_json:
        print_json(rows)
        return
    table = Table("slug", "category", "window", "steps", "enrolled", "active")
    for row in rows:
        table.add_row(
            row["slug"],
            row["category"],
            row["window"],
            str(len(row["steps"])),
            str(row["enrollments"]),
            "yes" if row["active"] else "no",
        )
    console.print(table)


@campaigns_app.command("preview")
@handle_errors
def preview(
    slug: Annotated[str, typer.Argument(help="Campaign slug.")],
    contact: Annotated[int, typer.Option("--contact", help="Contact id to preview for.")],
    start: Annotated[str | None, typer.Option("--start", help='"YYYY-MM-DD HH:MM" (default: now).')] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Zone of --start (default: the clinic's).")] = None,
    as_json: JsonOption = False,
) -> None:
    """For an enrolled contact, the schedule that exists; for anyone else, what enrolling now
    would create. Each step's local send time, rendered text, segments and lint warnings."""
    begin = parse_start(start, tz or settings().clinic_timezone)
    with transaction() as session:
        steps = preview_steps(session, settings(), slug, contact, start=begin, now=common.now())
    if as_json:
        print_json([s.as_dict() for s in steps])
        return
    enrolled = any(step.message_id is not None for step in steps)
    console.print(
        f"contact {contact}: "
        + ("the messages scheduled for this enrollment" if enrolled else "what enrolling now would schedule"),
        highlight=False,
    )
    for step in steps:
        # The clinic's clock first, the patient's after it where it differs (local_due_at's zone).
        patient_zone = str(step.local_due_at.tzinfo) if step.local_due_at else None
        at = when(step.due_at, patient_zone) if step.due_at else "no message"
        if step.state is not None:
            status = f"  {step.state}" + (f": {step.reason}" if step.reason else "")
        else:
            status = "" if step.would_send else f"  NOT SENT: {step.reason}"
        console.print(f"[bold]{step.key}[/bold] {step.channel} {at}", end="", highlight=False)
        console.print(status, style=None if step.would_send else "yellow", highlight=False, markup=False)
        if step.subject:
            console.print(f"  subject: {step.subject}", highlight=False, markup=False)
        if step.segments is not None:
            console.print(f"  {step.encoding}, {step.segments} segment(s)", highlight=False)
        for line in (step.text or "").splitlines():
            console.print(f"  | {line}", highlight=False, markup=False)
        for warning in step.warnings:
            console.print(f"  [yellow]{warning}[/yellow]", highlight=False)


@templates_app.command("check")
@handle_errors
def check(as_json: JsonOption = False) -> None:
    """Render every template with sample data and enforce the content rules. Exit 1 on any error."""
    report = check_templates(settings())
    if as_json:
        print_json(report.as_dict())
    else:
        for problem in report.problems:
            label = "[red]FAIL[/red]" if problem.severity == "error" else "[yellow]warn[/yellow]"
            console.print(f"{label} {problem.template}: {problem.message}", highlight=False)
        console.print(
            f"{len(report.checked)} template(s) checked, {len(report.errors)} error(s), "
            f"{len(report.problems) - len(report.errors)} warning(s)",
            highlight=False,
        )
    if not report.ok:
        raise typer.Exit(1)


def _contact_ids(session: Any, contacts: list[int] | None, tag: str | None) -> list[int] | None:
    if contacts and tag:
        raise OutreachError("give --contact or --tag, not both")
    if tag is not None:
        return eligibility.contact_ids_for_tag(session, tag)
    return list(contacts) if contacts else None


def enroll(
    slug: Annotated[str, typer.Argument(help="Campaign slug.")],
    contact: ContactsOption = None,
    tag: TagOption = None,
    start: Annotated[
        str | None, typer.Option("--start", help='"YYYY-MM-DD HH:MM" anchor for the steps (default: now).')
    ] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Zone of --start (default: the clinic's).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Enroll contacts and schedule every step. Refusals and skipped steps are listed per contact."""
    begin = parse_start(start, tz or settings().clinic_timezone)
    now = common.now()
    if begin is not None and begin < now:
        raise OutreachError("--start is in the past; steps would all be due at once")
    with transaction() as session:
        ids = _contact_ids(session, contact, tag)
        if not ids:
            raise OutreachError("no contacts: give --contact ID (repeatable) or --tag TAG matching someone")
        report = enroll_contacts(session, settings(), slug, ids, begin, now=now)
    if as_json:
        print_json(report.as_dict())
        return
    for outcome in report.outcomes:
        if outcome.outcome == "refused":
            err_console.print(f"contact {outcome.contact_id}: refused: {outcome.reason}", highlight=False)
        for key, why in outcome.skipped_steps.items():
            err_console.print(f"contact {outcome.contact_id}: step {key} skipped: {why}", highlight=False)
    console.print(
        f"{slug}: {len(report.enrolled)} enrolled, {len(report.already_enrolled)} already enrolled, "
        f"{len(report.refused)} refused; {report.messages_created} message(s) scheduled",
        highlight=False,
    )


def _scope_command(action: str) -> Any:
    def command(
        slug: Annotated[str | None, typer.Argument(help="Campaign slug (default: every campaign).")] = None,
        contact: ContactsOption = None,
        tag: TagOption = None,
        everything: Annotated[
            bool, typer.Option("--all", help="Every enrollment (when no slug or contact is given).")
        ] = False,
        as_json: JsonOption = False,
    ) -> None:
        now = common.now()
        with transaction() as session:
            ids = _contact_ids(session, contact, tag)
            if tag is not None and not ids:
                raise OutreachError(f"no contact has the tag {tag!r}")
            if action == "pause":
                result = lifecycle.pause(session, slug=slug, contact_ids=ids, everything=everything, now=now)
            elif action == "resume":
                result = lifecycle.resume(
                    session, settings(), slug=slug, contact_ids=ids, everything=everything, now=now
                )
            else:
                result = lifecycle.unenroll(
                    session, slug=slug, contact_ids=ids, everything=everything, now=now
                )
        if as_json:
            print_json(vars(result))
            return
        console.print(
            f"{action}: {result.enrollments} enrollment(s); {result.messages_cancelled} pending message(s) "
            f"cancelled, {result.messages_created} scheduled",
            highlight=False,
        )

    command.__doc__ = {
        "pause": "Pause enrollments: pending messages are cancelled until resume.",
        "resume": "Resume paused enrollments: remaining steps are rescheduled, shifted by the pause.",
        "unenroll": "End enrollments for good: pending messages are cancelled.",
    }[action]
    return handle_errors(command)


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    root.add_typer(campaigns_app, name="campaigns")
    root.add_typer(templates_app, name="templates")
    root.command("enroll")(handle_errors(enroll))
    for action in ("unenroll", "pause", "resume"):
        root.command(action)(_scope_command(action))
