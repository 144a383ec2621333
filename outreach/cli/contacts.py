"""`outreach contacts import|export|list|show|add|consent`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from outreach.cli.common import (
    JsonOption,
    console,
    err_console,
    handle_errors,
    now,
    pause_lines,
    print_json,
    session_factory,
    settings,
    transaction,
)
from outreach.contacts import (
    ContactInput,
    add_contact,
    change_consent,
    contact_json,
    export_contacts_csv,
    find_contacts_json,
    get_contact,
    import_contacts_csv,
)
from outreach.contacts.csvformat import RowError
from outreach.errors import OutreachError
from outreach.replies.pause import pause_of

app = typer.Typer(no_args_is_help=True, help="Patients and their consent.")



@app.command("import")
@handle_errors
def import_(
    file: Annotated[Path, typer.Argument(help="CSV file (UTF-8, with or without BOM).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything, write nothing.")] = False,
    by: Annotated[str, typer.Option("--by", help="Who is importing (kept with the consent evidence).")] = (
        "csv import"
    ),
    errors_csv: Annotated[
        Path | None, typer.Option("--errors-csv", help="Also write rejected rows' line and reason here.")
    ] = None,
) -> None:
    """Add or update contacts from a CSV file. Exit 0: all rows in; 1: some rejected; 2: file unusable."""
    rejected: list[RowError] = []

    def on_rejected(error: RowError) -> None:
        err_console.print(f"line {error.line}: {error.reason}", highlight=False, soft_wrap=True)
        if errors_csv is not None:
            rejected.append(error)

    progress = Progress(
        TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )
    with progress, session_factory()() as session:
        task = progress.add_task("import", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = import_contacts_csv(
            session, file, clinic_timezone=settings().clinic_timezone, recorded_by=by,
            on_progress=on_progress, on_rejected=on_rejected, now=now(),
        )
        if dry_run:
            session.rollback()
        else:
            session.commit()
    if errors_csv is not None:
        try:
            with errors_csv.open("w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out)
                writer.writerow(["line", "reason"])
                writer.writerows((e.line, e.reason) for e in rejected)
        except OSError as exc:
            raise OutreachError(f"cannot write {errors_csv.name}: {exc.strerror}") from None
    for column in report.ignored_columns:
        err_console.print(
            f"note: column {column!r} is not one of ours and was ignored", highlight=False, soft_wrap=True
        )
    if report.ignored_columns_more:
        err_console.print(
            f"note: {report.ignored_columns_more} more columns are not ours and were ignored", highlight=False
        )
    summary = (
        f"{report.rows} rows: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.rejected} rejected; "
        f"{report.consent_events} consent changes"
    )
    if dry_run:
        summary = "dry run, nothing written: " + summary
    console.print(summary, highlight=False, soft_wrap=True)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@app.command()
@handle_errors
def export(file: Annotated[Path, typer.Argument(help="Where to write the CSV.")]) -> None:
    """Write every contact in the import format (the file holds patient data: keep it safe)."""
    with transaction() as session:
        count = export_contacts_csv(session, file)
    console.print(f"{count} contacts written to {file}", highlight=False)


@app.command("list")
@handle_errors
def list_(
    search: Annotated[str | None, typer.Option(help="Part of a name, phone, email or external id.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only contacts with this tag.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many (0: all).")] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonOption = False,
) -> None:
    """Contacts, in id order."""
    with transaction() as session:
        documents = find_contacts_json(session, search=search, tag=tag, limit=limit or None, offset=offset)
    if as_json:
        print_json(documents)
        return
    table = Table("id", "name", "phone", "email", "zone", "tags", "sms", "email consent")
    for doc in documents:
        phone = (doc["phone"] or "") + (" (shared)" if doc["shared_phone"] else "")
        table.add_row(
            str(doc["id"]), f"{doc['first_name']} {doc['last_name']}".strip(), phone, doc["email"] or "",
            doc["timezone"], ", ".join(doc["tags"]), _granted(doc, "sms"), _granted(doc, "email"),
        )
    console.print(table)


def _granted(doc: dict[str, object], channel: str) -> str:
    states = doc["consent"][channel]  # type: ignore[index]
    granted = [category for category, state in states.items() if state == "granted"]
    return ", ".join(granted) or "-"


@app.command()
@handle_errors
def show(
    contact: Annotated[str, typer.Argument(help="Contact id, or ext:EXTERNAL_ID.")],
    as_json: JsonOption = False,
) -> None:
    """One contact with its consent."""
    with transaction() as session:
        doc = contact_json(session, get_contact(session, contact))
        pause = pause_of(session, int(doc["id"]))
    if as_json:
        print_json({**doc, "pause": pause.as_dict() if pause is not None else None})
        return
    for key in ("id", "external_id", "first_name", "last_name", "phone", "email", "timezone", "language"):
        console.print(f"{key:12} {doc[key] if doc[key] is not None else ''}", highlight=False)
    console.print(f"{'tags':12} {', '.join(doc['tags'])}", highlight=False)
    if doc["shared_phone"]:
        console.print(f"{'':12} this phone number is shared with another contact", highlight=False)
    for channel, states in doc["consent"].items():
        console.print(
            f"{channel + ' consent':12} " + ", ".join(f"{cat} {state}" for cat, state in states.items()),
            highlight=False,
        )
    if pause is not None:
        for line in pause_lines(pause):
            console.print(f"{'paused':12} {line}", style="red", highlight=False, markup=False)


@app.command()
@handle_errors
def add(
    first_name: Annotated[str, typer.Option("--first-name")] = "",
    last_name: Annotated[str, typer.Option("--last-name")] = "",
    phone: Annotated[str | None, typer.Option(help="Any usual spelling; US when no country code.")] = None,
    email: Annotated[str | None, typer.Option()] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone; default: from the phone's area code, else the clinic's.")
    ] = None,
    language: Annotated[str | None, typer.Option(help="e.g. en, es.")] = None,
    external_id: Annotated[str | None, typer.Option("--external-id", help="e.g. the EHR's MRN.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Repeat for several tags.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add one contact (it needs a phone or an email). Consent is recorded separately."""
    data = ContactInput(
        first_name=first_name, last_name=last_name, phone=phone, email=email, timezone=timezone,
        language=language, external_id=external_id, tags=tag or [],
    )
    with transaction() as session:
        created = add_contact(session, data, clinic_timezone=settings().clinic_timezone, now=now())
        doc = contact_json(session, created)
    if as_json:
        print_json(doc)
    else:
        shared = " (this phone is shared with another contact)" if doc["shared_phone"] else ""
        console.print(f"added contact {doc['id']}, time zone {doc['timezone']}{shared}", highlight=False)


@app.command()
@handle_errors
def consent(
    contact: Annotated[str, typer.Argument(help="Contact id, or ext:EXTERNAL_ID.")],
    channel: Annotated[str, typer.Option(help="sms or email.")],
    category: Annotated[list[str], typer.Option(help="care, education or marketing; repeat for several.")],
    evidence: Annotated[str, typer.Option(help="What the patient said or signed, and how.")],
    by: Annotated[str, typer.Option("--by", help="Who is recording this.")],
    grant: Annotated[bool | None, typer.Option("--grant/--revoke", help="Grant or revoke.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Record a patient's consent (or its withdrawal) on staff's word, with evidence."""
    if grant is None:
        raise OutreachError("say --grant or --revoke")
    with transaction() as session:
        found = get_contact(session, contact)
        recorded = change_consent(
            session, found.id, channel, category, grant=grant, wording=evidence, recorded_by=by, now=now()
        )
        doc = contact_json(session, found)
    if as_json:
        print_json(doc)
    else:
        verb = "granted" if grant else "revoked"
        console.print(
            f"contact {doc['id']}: {channel} {', '.join(recorded)} {verb}", highlight=False
        )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="contacts")
