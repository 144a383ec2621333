"""CSV import (bad rows reported, good rows in, idempotent) and the CLI, on both databases."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from outreach.appointments import import_appointments_csv
from outreach.cli.app import app
from outreach.config import Settings
from outreach.contacts.reader import CsvUnusable
from outreach.models import Appointment, Message
from tests.support.appointments import la
from tests.support.factories import make_contact

NOW = la(2025, 6, 4, 12, 0)
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def _count(session: Session, model: type[Appointment] | type[Message]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_import_reports_bad_rows_by_line_and_takes_the_good_ones(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    contact = make_contact(session)
    contact.external_id = "MRN-1"
    session.flush()
    csv_file = tmp_path / "visits.csv"
    csv_file.write_text(
        "External ID,Contact External ID,Date,Time,Type,Location,Notes\n"
        "A-1,MRN-1,2025-06-10,10:00,infusion,Room 2,first\n"
        "A-2,MRN-404,2025-06-11,10:00,infusion,,\n"
        "A-3,MRN-1,2025-13-01,10:00,infusion,,\n"
        "A-4,MRN-1,2025-06-12,10:00,massage,,\n"
        "A-1,MRN-1,2025-06-13,10:00,infusion,,\n"
        "\n"
        "A-5,MRN-1,2025-06-20,09:30,booster,,\n",
        encoding="utf-8",
    )
    report = import_appointments_csv(session, settings, csv_file, now=NOW)
    assert (report.rows, report.booked, report.rejected, report.exit_code) == (6, 2, 4, 1)
    assert [(e.line, e.reason) for e in report.errors] == [
        (3, "unknown contact_external_id"),
        (4, "invalid date or time (use YYYY-MM-DD and 24-hour HH:MM)"),
        (5, "unknown type"),
        (6, "duplicate of line 2"),
    ]
    assert report.ignored_columns == ["Notes"]
    visits = session.scalars(select(Appointment).order_by(Appointment.starts_at)).all()
    assert [(v.external_id, v.location) for v in visits] == [("A-1", "Room 2"), ("A-5", "")]
    assert visits[0].starts_at == la(2025, 6, 10, 10, 0)
    messages = _count(session, Message)
    again = import_appointments_csv(session, settings, csv_file, now=NOW)
    assert (again.booked, again.unchanged, again.rejected) == (0, 2, 4)
    assert _count(session, Message) == messages and _count(session, Appointment) == 2


def test_import_status_column_cancels_and_a_new_time_reschedules(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    contact = make_contact(session)
    first = tmp_path / "a.csv"
    first.write_text(f"external_id,contact_id,starts_at,type\nB-1,{contact.id},2025-06-10 10:00,infusion\n")
    import_appointments_csv(session, settings, first, now=NOW)
    second = tmp_path / "b.csv"
    second.write_text(
        f"external_id,contact_id,starts_at,type,status\nB-1,{contact.id},2025-06-11 10:00,infusion,\n"
    )
    assert import_appointments_csv(session, settings, second, now=NOW).rescheduled == 1
    third = tmp_path / "c.csv"
    third.write_text(
        "external_id,contact_id,starts_at,type,status\n"
        f"B-1,{contact.id},2025-06-11 10:00,infusion,cancelled\n"
    )
    assert import_appointments_csv(session, settings, third, now=NOW).cancelled == 1
    visit = session.scalars(select(Appointment)).one()
    assert (visit.status, visit.version) == ("cancelled", 2)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "is empty"),
        ("external_id,date,time,type\n", "contact_id"),
        ("contact_id,type\n", "starts_at"),
        ("contact_id;starts_at;type\n", "contact_id"),
    ],
)
def test_an_unusable_file_is_refused_whole(
    session: Session, settings: Settings, tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(CsvUnusable, match=problem) as error:
        import_appointments_csv(session, settings, path, now=NOW)
    assert error.value.exit_code == 2


def test_cli_add_list_cancel(cli: CliRunner, session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        contact_id = make_contact(session).id
    day = datetime.now().year + 1
    result = cli.invoke(
        app,
        [
            "appointments",
            "add",
            "--contact",
            str(contact_id),
            "--at",
            f"{day}-03-02 10:00",
            "--type",
            "infusion",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    change = json.loads(result.stdout)["changes"][0]
    assert change["action"] == "booked" and change["appointment"]["local_starts_at"].startswith(
        f"{day}-03-02T10:00"
    )
    listed = cli.invoke(app, ["appointments", "list", "--date", f"{day}-03-02", "--json"])
    assert listed.exit_code == 0, listed.output
    [visit] = json.loads(listed.stdout)["appointments"]
    assert visit["confirmation"].startswith(("request goes ", "request held until ", "requested (sent "))
    cancelled = cli.invoke(app, ["appointments", "cancel", str(visit["id"]), "--json"])
    assert json.loads(cancelled.stdout)["changes"][0]["appointment"]["status"] == "cancelled"


def test_cli_mistakes_are_one_line_errors(cli: CliRunner) -> None:
    bad_time = cli.invoke(
        app, ["appointments", "add", "--contact", "1", "--at", "tomorrow", "--type", "infusion"]
    )
    assert bad_time.exit_code == 1 and "YYYY-MM-DD HH:MM" in bad_time.stderr
    missing = cli.invoke(app, ["appointments", "cancel", "999"])
    assert missing.exit_code == 1 and "appointment 999 not found" in missing.stderr
    with_contact = cli.invoke(
        app, ["appointments", "add", "--contact", "424242", "--at", "2099-01-01 10:00", "--type", "infusion"]
    )
    assert with_contact.exit_code == 1 and "contact 424242 not found" in with_contact.stderr


def test_cli_import_exit_codes(cli: CliRunner, tmp_path: Path) -> None:
    partly = tmp_path / "partly.csv"
    partly.write_text("contact_id,starts_at,type\n999,2099-01-01 10:00,infusion\n")
    result = cli.invoke(app, ["appointments", "import", str(partly)])
    assert result.exit_code == 1 and "line 2: unknown contact_id" in result.stderr
    unusable = tmp_path / "unusable.csv"
    unusable.write_text("name\n")
    assert cli.invoke(app, ["appointments", "import", str(unusable)]).exit_code == 2
