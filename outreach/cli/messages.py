"""`outreach messages list|show`: the outbox and its delivery log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from outreach.cli.common import console, handle_errors, print_json, settings, transaction
from outreach.delivery.views import list_messages, message_detail

app = typer.Typer(no_args_is_help=True, help="Messages in the outbox and their delivery log.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@app.command("list")
@handle_errors
def list_(
    contact: Annotated[int | None, typer.Option("--contact", help="Only this contact's messages.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only messages in this state.")] = None,
    campaign: Annotated[str | None, typer.Option("--campaign", help="Only this campaign's messages.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Messages by due time: the recipient's local time, what happens to each (when it goes, held
    until when and why, sent, delivered, skipped and why; times in the clinic's zone), attempts."""
    with transaction() as session:
        rows = list_messages(
            session,
            contact_id=contact,
            state=status,
            campaign=campaign,
            limit=limit,
            staff_zone=settings().clinic_zone,
        )
    if as_json:
        print_json(rows)
        return
    table = Table("id", "contact", "channel", "category", "template", "local due", "what happens", "tries")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["contact_id"] or "-"),
            row["channel"],
            row["category"],
            row["template"] or "-",
            row["local_due_at"] or row["due_at"],
            row["outcome"],
            str(row["attempts"]),
        )
    console.print(table)


@app.command("show")
@handle_errors
def show(
    message_id: Annotated[int, typer.Argument(help="Message id.")],
    as_json: JsonOption = False,
) -> None:
    """One message with its attempts and provider events."""
    with transaction() as session:
        detail = message_detail(session, message_id, settings().clinic_zone)
    if as_json:
        print_json(detail)
        return
    for key, value in detail.items():
        if key not in ("attempts_log", "events"):
            console.print(f"{key}: {value}", highlight=False, markup=False)
    for attempt in detail["attempts_log"]:
        console.print(
            f"attempt {attempt['number']}: {attempt['started_at']} -> {attempt['outcome']} "
            f"{attempt['error_code'] or ''} {attempt['detail'] or ''}",
            highlight=False,
            markup=False,
        )
    for event in detail["events"]:
        console.print(
            f"event {event['received_at']}: {event['status']} {event['error_code'] or ''}",
            highlight=False,
            markup=False,
        )


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    root.add_typer(app, name="messages")
