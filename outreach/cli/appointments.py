"""`outreach appointments ...`: book and change visits, day view, CSV import
(service: outreach.appointments)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Column, Table

from outreach import appointments, timefmt
from outreach.appointments.service import Change
from outreach.cli.common import (
    JsonOption,
    console,
    err_console,
    handle_errors,
    now,
    print_json,
    settings,
    transaction,
    when,
)
from outreach.contacts.fields import FieldError, normalize_timezone
from outreach.errors import OutreachError

app = typer.Typer(no_args_is_help=True, help="Appointments and their reminders.")

TzOption = Annotated[
    str | None,
    typer.Option("--tz", help="Time zone of --at (default: the clinic's, OUTREACH_CLINIC_TIMEZONE)."),
]


def _zone(name: str | None) -> str:
    if name is None:
        return settings().clinic_timezone
    try:
        return normalize_timezone(name)
    except FieldError:
        raise OutreachError("--tz: unknown time zone (use an IANA name like America/Los_Angeles)") from None


def parse_local(text: str, zone_name: str) -> datetime:
    try:
        naive = datetime.strptime(" ".join(text.split()), "%Y-%m-%d %H:%M")
    except ValueError:
        raise OutreachError('--at: expected "YYYY-MM-DD HH:MM" (24-hour, local time)') from None
    return naive.replace(tzinfo=ZoneInfo(zone_name))


def _report(changes: list[Change], as_json: bool) -> None:
    if as_json:
        print_json({"changes": [c.as_dict() for c in changes]})
        return
    for change in changes:
        a = change.appointment
        console.print(
            f"appointment {a.id} ({a.type}, {when(a.starts_at, a.timezone)}): {change.action}; "
            f"{len(change.message_ids)} message(s) scheduled, {change.cancelled_messages} cancelled"
        )
        for skipped in change.skipped:
            console.print(f"  skipped {skipped['key']}: {skipped['reason']}", highlight=False)


@app.command("add")
@handle_errors
def add_command(
    contact: Annotated[int, typer.Option("--contact", help="Contact id.")],
    at: Annotated[list[str], typer.Option("--at", help='"YYYY-MM-DD HH:MM"; repeat to book a series.')],
    kind: Annotated[str, typer.Option("--type", help="Appointment type (a file in templates/reminders/).")],
    tz: TzOption = None,
    duration: Annotated[int | None, typer.Option("--duration", help="Minutes (default: the type's).")] = None,
    location: Annotated[str, typer.Option("--location")] = "",
    external_id: Annotated[str | None, typer.Option("--external-id", help="The booking system's id.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Book a visit (or a series: --at several times) and schedule its reminders."""
    zone = _zone(tz)
    starts = [parse_local(text, zone) for text in at]
    if external_id is not None and len(starts) > 1:
        raise OutreachError("--external-id names one visit; book a series without it")
    with transaction() as session:
        if external_id is not None:
            change = appointments.upsert(
                session,
                settings(),
                appointments.AppointmentData(
                    contact_id=contact,
                    starts_at=starts[0],
                    type=kind,
                    external_id=external_id,
                    duration_minutes=duration,
                    location=location or None,
                    timezone=zone,
                ),
                now=now(),
            )
            changes = [change]
        else:
            changes = appointments.book_series(
                session,
                settings(),
                contact_id=contact,
                starts=starts,
                type=kind,
                duration_minutes=duration,
                location=location,
                timezone=zone,
                now=now(),
            )
    _report(changes, as_json)


@app.command("reschedule")
@handle_errors
def reschedule_command(
    appointment_id: int,
    at: Annotated[str, typer.Option("--at", help='"YYYY-MM-DD HH:MM" in the visit\'s zone or --tz.')],
    tz: TzOption = None,
    notify: Annotated[
        bool, typer.Option("--notify/--no-notify", help="Tell the patient the new time.")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Move a visit: its pending reminders are replaced by ones for the new time."""
    with transaction() as session:
        current = appointments.get(session, appointment_id)
        zone = _zone(tz) if tz else current.timezone
        change = appointments.reschedule(
            session,
            settings(),
            appointment_id,
            parse_local(at, zone),
            timezone=zone if tz else None,
            notify=notify,
            now=now(),
        )
    _report([change], as_json)


@app.command("cancel")
@handle_errors
def cancel_command(
    appointment_id: int,
    notify: Annotated[bool, typer.Option("--notify", help="Send the patient a short notice.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Cancel a visit and its pending reminders."""
    with transaction() as session:
        change = appointments.cancel(session, settings(), appointment_id, notify=notify, now=now())
    _report([change], as_json)


@app.command("complete")
@handle_errors
def complete_command(appointment_id: int, as_json: JsonOption = False) -> None:
    """Mark a visit completed: post-visit steps (the next-day check-in) start."""
    with transaction() as session:
        change = appointments.complete(session, settings(), appointment_id, now=now())
    _report([change], as_json)


@app.command("no-show")
@handle_errors
def no_show_command(appointment_id: int, as_json: JsonOption = False) -> None:
    """Mark a visit as a no-show: the check-in stops, the "we missed you" step starts."""
    with transaction() as session:
        change = appointments.no_show(session, settings(), appointment_id, now=now())
    _report([change], as_json)


@app.command("confirm")
@handle_errors
def confirm_command(appointment_id: int, as_json: JsonOption = False) -> None:
    """Record that the patient confirmed (e.g. by phone); pending requests to confirm stop."""
    with transaction() as session:
        change = appointments.confirm(session, settings(), appointment_id, now=now())
    _report([change], as_json)


@app.command("list")
@handle_errors
def list_command(
    day: Annotated[
        str | None, typer.Option("--date", help="YYYY-MM-DD in the clinic's zone (default: today).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The day view: each visit with its confirmation state and what was sent."""
    zone = settings().clinic_zone
    try:
        wanted = date.fromisoformat(day) if day else now().astimezone(zone).date()
    except ValueError:
        raise OutreachError("--date: expected YYYY-MM-DD") from None
    with transaction() as session:
        visits = appointments.day_view(session, wanted, zone)
    if as_json:
        print_json({"date": wanted.isoformat(), "timezone": str(zone), "appointments": visits})
        return
    if not visits:
        console.print(f"No appointments on {timefmt.long_date(wanted)}.")
        return
    console.print(f"Appointments on {timefmt.long_date(wanted)} ({timefmt.zone_name(zone)} time)")
    table = Table(
        "id", "time", "patient", "type", "status", "confirmation", Column("messages", overflow="fold")
    )
    for visit in visits:
        sent = [
            f"{m['reminder']}: {m['outcome']}" for m in visit["messages"] if m["version"] == visit["version"]
        ]
        table.add_row(
            str(visit["id"]),
            visit["local_starts_at"][11:16],
            f"#{visit['contact_id']} {visit['contact_name']}",
            visit["type"],
            visit["status"],
            visit["confirmation"],
            "\n".join(sent),
        )
    console.print(table)


@app.command("import")
@handle_errors
def import_command(
    file: Path,
    notify: Annotated[bool, typer.Option("--notify/--no-notify", help="Send change notices.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Import appointments from a CSV (idempotent by external_id). Exit 1 if rows were rejected,
    2 if the file could not be used at all (nothing written then)."""
    with transaction() as session:
        report = appointments.import_appointments_csv(session, settings(), file, notify=notify, now=now())
    if as_json:
        print_json(report.as_dict())
    else:
        console.print(
            f"{report.file}: {report.rows} rows, {report.booked} booked, {report.rescheduled} rescheduled, "
            f"{report.updated} updated, {report.cancelled} cancelled, {report.closed} completed/no-show, "
            f"{report.unchanged} unchanged, {report.rejected} rejected"
        )
        if report.ignored_columns:
            err_console.print(f"ignored columns: {', '.join(report.ignored_columns)}", highlight=False)
        for error in report.errors:
            err_console.print(f"line {error.line}: {error.reason}", highlight=False)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    root.add_typer(app, name="appointments")
