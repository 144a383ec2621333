"""`outreach inbox ...`: the staff inbox from the command line (service: outreach.replies.inbox)."""

from __future__ import annotations

import getpass
from typing import Annotated, cast

import typer
from rich.table import Table

from outreach.cli.common import (
    JsonOption,
    console,
    handle_errors,
    now,
    pause_lines,
    print_json,
    settings,
    transaction,
    when,
)
from outreach.errors import OutreachError
from outreach.replies import inbox

app = typer.Typer(no_args_is_help=True, help="Patient replies, crisis cases and tasks for staff.")

StaffOption = Annotated[
    str | None, typer.Option("--as", help="Who is acting (default: your login name).")
]


def _staff(name: str | None) -> str:
    return name or getpass.getuser()


@app.command("list")
@handle_errors
def list_command(
    state: Annotated[
        str, typer.Option(help="open (unread or read), unread, read, handled, or all.")
    ] = "open",
    urgent: Annotated[bool, typer.Option("--urgent", help="Only urgent items.")] = False,
    assigned_to: Annotated[str | None, typer.Option("--assigned-to")] = None,
    as_json: JsonOption = False,
) -> None:
    """List inbox items, urgent first, newest first."""
    if state not in ("open", "unread", "read", "handled", "all"):
        raise OutreachError(f"--state must be open, unread, read, handled or all, not {state!r}")
    with transaction() as session:
        items = inbox.list_items(
            session, state=cast(inbox.StateFilter, state), urgent_only=urgent, assigned_to=assigned_to
        )
    if as_json:
        print_json({"items": [item.as_dict() for item in items]})
        return
    if not items:
        console.print("No inbox items.")
        return
    # Narrow columns and wrapping rather than cutting: a date must never be cut at 80 columns.
    table = Table("id", "state", "kind", "contact", "received", "text", show_lines=True)
    for item in items:
        contact = (
            f"#{item.contact_id} {item.contact_name}" if item.contact_id is not None
            else f"{len(item.candidates)} candidates" if item.candidates else "unknown sender"
        )
        kind = item.kind + (f" ({item.classification})" if item.classification else "")
        table.add_row(
            str(item.id),
            ("[bold red]URGENT[/bold red] " if item.urgent else "") + item.state,
            kind,
            contact + (f", assigned to {item.assigned_to}" if item.assigned_to else ""),
            when(item.created_at),
            item.text if len(item.text) <= 60 else item.text[:57] + "...",
        )
    console.print(table)


@app.command("show")
@handle_errors
def show_command(
    item_id: int,
    as_json: JsonOption = False,
) -> None:
    """Show one item with the whole conversation; marks it read."""
    with transaction() as session:
        detail = inbox.show_item(session, item_id)
    if as_json:
        print_json(detail.as_dict())
        return
    item = detail.item
    console.print(f"[bold]Inbox item {item.id}[/bold]  {item.kind}, {item.state}"
                  + ("  [bold red]URGENT[/bold red]" if item.urgent else ""), highlight=False)
    if item.contact_id is not None:
        who = f"Contact #{item.contact_id} {item.contact_name}  phone {detail.phone}"
        console.print(who, highlight=False, markup=False)
    elif item.candidates:
        console.print(f"Phone {detail.phone} is shared by:", highlight=False)
        for candidate in item.candidates:
            console.print(f"  #{candidate['contact_id']} {candidate['name']}", highlight=False)
    else:
        console.print(f"Unknown sender {detail.phone}", highlight=False)
    if detail.pause is not None:
        for line in pause_lines(detail.pause):
            console.print(line, style="red", highlight=False, markup=False)
    if detail.sms_opted_out:
        console.print("[red]Opted out of SMS: phone, do not text.[/red]")
    if item.assigned_to:
        console.print(f"Assigned to {item.assigned_to}", highlight=False)
    console.print(f"Received {when(item.created_at)}", highlight=False)
    console.print()
    for entry in detail.conversation:
        who = "patient" if entry.direction == "in" else "clinic"
        console.print(f"{when(entry.at)}, {who} [{entry.detail}]:", highlight=False, markup=False)
        console.print(f"  {entry.text}", highlight=False, markup=False)


@app.command("reply")
@handle_errors
def reply_command(
    item_id: int,
    text: str,
    contact: Annotated[
        int | None, typer.Option("--contact", help="Which candidate, when the phone is shared.")
    ] = None,
    staff: StaffOption = None,
) -> None:
    """Text the patient back (never to an opted-out number)."""
    with transaction() as session:
        queued = inbox.reply(session, settings(), item_id, text, _staff(staff), now(), contact_id=contact)
    hours = settings().conversational_window_hours
    when = (
        "it goes out now" if queued.goes_out_any_hour
        else f"the patient wrote more than {hours:g} h ago, so it waits for the sending window"
    )
    console.print(f"Reply queued as message {queued.message_id}: {when}.", highlight=False)


@app.command("handle")
@handle_errors
def handle_command(item_id: int, staff: StaffOption = None) -> None:
    """Mark an item handled."""
    with transaction() as session:
        item = inbox.mark_handled(session, item_id, _staff(staff), now())
        paused = (
            item.kind == "crisis" and item.contact_id is not None
            and inbox.show_item(session, item_id, mark_read=False).automation_paused_at is not None
        )
    console.print(f"Inbox item {item.id} handled by {item.handled_by}.", highlight=False)
    if paused:
        console.print(f"Automation to contact #{item.contact_id} is still paused: "
                      f"outreach inbox clear-pause {item.contact_id}", highlight=False)


@app.command("assign")
@handle_errors
def assign_command(item_id: int, name: str) -> None:
    """Assign an item to a staff member."""
    with transaction() as session:
        item = inbox.assign(session, item_id, name)
    console.print(f"Inbox item {item.id} assigned to {item.assigned_to}.", highlight=False)


@app.command("clear-pause")
@handle_errors
def clear_pause_command(contact_id: int, staff: StaffOption = None) -> None:
    """Let automated messages reach a contact again after a crisis pause."""
    with transaction() as session:
        cleared = inbox.clear_crisis_pause(session, contact_id, _staff(staff), now())
    if cleared:
        console.print(f"Automation to contact #{contact_id} resumes.", highlight=False)
    else:
        console.print(f"Contact #{contact_id} had no automation pause.", highlight=False)


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    root.add_typer(app, name="inbox")
