"""Staff output at 80 columns: the clinic's local time, dates whole; --json keeps ISO-8601."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from outreach.cli.app import app
from outreach.config import Settings
from tests.support.replies import add_contact, form, receive, schedule

NIGHT = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)  # 03:00 Pacific


def _lines(output: str) -> list[str]:
    return output.splitlines()


def test_inbox_shows_pacific_times_and_fits_80_columns_without_cutting(
    cli: CliRunner, session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session)
    receive(session_factory, settings, form("Can I bring my partner to the visit next week please?"), NIGHT)

    listing = cli.invoke(app, ["inbox", "list"], env={"COLUMNS": "80"})
    assert listing.exit_code == 0, listing.output
    assert all(len(line) <= 80 for line in _lines(listing.stdout))
    assert "…" not in listing.stdout and "UTC" not in listing.stdout
    for word in ("Wed", "10", "Jun", "2026,", "03:00", "Pacific"):
        assert word in listing.stdout

    shown = cli.invoke(app, ["inbox", "show", "1"], env={"COLUMNS": "80"})
    assert "Received Wed 10 Jun 2026, 03:00 Pacific" in shown.stdout
    assert "Wed 10 Jun 2026, 03:00 Pacific, patient [other]:" in shown.stdout

    document = json.loads(cli.invoke(app, ["inbox", "list", "--json"]).stdout)
    assert document["items"][0]["created_at"] == "2026-06-10T10:00:00+00:00"


def test_messages_show_the_patients_time_beside_the_clinics_where_it_differs(
    cli: CliRunner, session: Session, settings: Settings
) -> None:
    contact = add_contact(session)
    contact.timezone = "America/New_York"
    session.commit()
    schedule(session, contact.id, "sms", "care", "reminder", datetime(2026, 6, 11, 16, 0, tzinfo=UTC))

    listing = cli.invoke(app, ["messages", "list"], env={"COLUMNS": "80"})
    assert all(len(line) <= 80 for line in _lines(listing.stdout))
    assert "…" not in listing.stdout
    shown = " ".join(cli.invoke(app, ["messages", "show", "1"]).stdout.split())
    assert "due_at: Thu 11 Jun 2026, 09:00 Pacific (Thu 11 Jun 2026, 12:00 Eastern for the patient)" in shown
    rows = json.loads(cli.invoke(app, ["messages", "list", "--json"]).stdout)
    assert (rows[0]["due_at"], rows[0]["local_due_at"]) == (
        "2026-06-11T16:00:00+00:00", "2026-06-11T12:00:00-04:00"
    )
