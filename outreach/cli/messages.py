"""`outreach messages list|show`: the outbox and its delivery log."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Column, Table

from outreach.cli.common import (
    JsonOption,
    console,
    contact_zones,
    handle_errors,
    pause_lines,
    print_json,
    settings,
    transaction,
    when_iso,
)
from outreach.delivery.views import list_messages, message_detail
from outreach.replies.pause import Pause, pause_of, pauses_of, shown_state

app = typer.Typer(no_args_is_help=True, help="Messages in the outbox and their delivery log.")



@app.command("list")
@handle_errors
def list_(
    contact: Annotated[int | None, typer.Option("--contact", help="Only this contact's messages.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only messages in this state.")] = None,
    campaign: Annotated[str | None, typer.Option("--campaign", help="Only this campaign's messages.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Messages by due time (the clinic's time, the patient's where it differs), their state, what
    happens to each (when it goes, held until when and why, sent, delivered, skipped and why), tries."""
    with transaction() as session:
        rows = list_messages(
            session,
            contact_id=contact,
            state=status,
            campaign=campaign,
            limit=limit,
            staff_zone=settings().clinic_zone,
        )
        contact_ids = [r["contact_id"] for r in rows if r["contact_id"] is not None]
        pauses = pauses_of(session, contact_ids)
        zones = contact_zones(session, contact_ids)
    for row in rows:
        _add_shown_state(row, pauses)
    if as_json:
        print_json(rows)
        return
    # Wraps rather than cuts at 80 columns: the due date stays whole.
    table = Table(
        "id", "contact", Column("message", overflow="fold"), Column("due", overflow="fold"),
        Column("state", no_wrap=True), Column("what happens", overflow="fold"), "tries",
    )
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["contact_id"] or "-"),
            f"{row['channel']} {row['category']}\n{row['template'] or '-'}",
            when_iso(row["due_at"], zones.get(row["contact_id"])),
            row["shown_state"],
            row["outcome"],
            str(row["attempts"]),
        )
    console.print(table)
    for contact_id, pause in sorted(pauses.items()):
        line = f"Contact #{contact_id}: " + " ".join(pause_lines(pause))
        console.print(line, highlight=False, markup=False)


def _add_shown_state(row: dict[str, Any], pauses: dict[int, Pause]) -> None:
    """What staff read as the state (stored ``state`` is unchanged, also in ``--json``)."""
    row["shown_state"] = shown_state(row["state"], row["kind"], row["contact_id"] in pauses)


@app.command("show")
@handle_errors
def show(
    message_id: Annotated[int, typer.Argument(help="Message id.")],
    as_json: JsonOption = False,
) -> None:
    """One message with its attempts and provider events."""
    with transaction() as session:
        detail = message_detail(session, message_id, settings().clinic_zone)
        contact_id = detail["contact_id"]
        pause = pause_of(session, contact_id) if contact_id is not None else None
        zone = contact_zones(session, [contact_id] if contact_id is not None else []).get(contact_id)
    _add_shown_state(detail, {contact_id: pause} if pause is not None else {})
    if as_json:
        print_json({**detail, "pause": pause.as_dict() if pause is not None else None})
        return
    for key, value in detail.items():
        if key in ("attempts_log", "events", "shown_state", "local_due_at"):
            continue
        if key == "state":
            value = detail["shown_state"]
        elif key in TIMES and value:
            value = when_iso(value, zone)
        console.print(f"{key}: {value if value is not None else ''}", highlight=False, markup=False)
    if pause is not None:
        for line in pause_lines(pause):
            console.print(line, highlight=False, markup=False)
    for attempt in detail["attempts_log"]:
        console.print(
            f"attempt {attempt['number']}: {when_iso(attempt['started_at'])} -> {attempt['outcome']} "
            f"{attempt['error_code'] or ''} {attempt['detail'] or ''}",
            highlight=False,
            markup=False,
        )
    for event in detail["events"]:
        console.print(
            f"event {when_iso(event['received_at'])}: {event['status']} {event['error_code'] or ''}",
            highlight=False,
            markup=False,
        )


# Fields of ``message_detail`` that are instants, shown on the clinic's wall clock.
TIMES = ("due_at", "not_after", "sent_at")


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    root.add_typer(app, name="messages")
