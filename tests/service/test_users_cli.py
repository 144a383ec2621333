"""`outreach users ...` and `outreach audit export` as an administrator uses them."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from outreach import audit
from outreach.cli.app import app
from outreach.models import User

PASSWORD = "correct horse battery"


def run(cli: CliRunner, *args: str, stdin: str | None = None) -> Result:
    return cli.invoke(app, list(args), input=stdin)


def test_add_reads_the_password_twice_and_lists_the_login(cli: CliRunner, session: Session) -> None:
    added = run(
        cli, "users", "add", "Nurse@Clinic.example.org", "--role", "staff", stdin=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert added.exit_code == 0, added.output
    listed = run(cli, "users", "list")
    assert "nurse@clinic.example.org" in listed.output and "staff" in listed.output
    assert PASSWORD not in listed.output
    user = session.query(User).one()
    assert user.role == "staff" and not user.disabled


def test_the_list_says_when_a_login_was_added_on_the_clinic_clock(cli: CliRunner, session: Session) -> None:
    run(cli, "users", "add", "late@clinic.example.org", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    # Added at 7 p.m. in California: already the next day in UTC.
    session.query(User).update({"created_at": datetime(2026, 6, 11, 2, 0, tzinfo=UTC)})
    session.commit()
    words = " ".join(run(cli, "users", "list").output.split())
    assert "Wed 10 Jun 2026, 19:00 Pacific" in words


def test_two_different_passwords_add_nobody(cli: CliRunner, session: Session) -> None:
    result = run(cli, "users", "add", "a@clinic.example.org", stdin=f"{PASSWORD}\nsomething else entirely\n")
    assert result.exit_code == 1
    assert "differ" in result.output
    assert session.query(User).count() == 0


def test_an_unknown_role_is_refused_before_asking_for_a_password(cli: CliRunner) -> None:
    result = run(cli, "users", "add", "a@clinic.example.org", "--role", "owner")
    assert result.exit_code == 1 and "admin or staff" in result.output


def test_disable_and_reset_password_are_audited(cli: CliRunner, session: Session, tmp_path: Path) -> None:
    run(cli, "users", "add", "a@clinic.example.org", "--role", "admin", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    reset = run(
        cli,
        "users",
        "reset-password",
        "a@clinic.example.org",
        stdin="another long password\nanother long password\n",
    )
    assert reset.exit_code == 0, reset.output
    disabled = run(cli, "users", "disable", "a@clinic.example.org")
    assert disabled.exit_code == 0 and "sessions have ended" in disabled.output
    assert "disabled" in run(cli, "users", "list").output
    missing = run(cli, "users", "disable", "nobody@clinic.example.org")
    assert missing.exit_code == 1 and "no login nobody@clinic.example.org" in missing.output

    out = tmp_path / "audit.csv"
    exported = run(cli, "audit", "export", str(out))
    assert exported.exit_code == 0, exported.output
    with out.open(encoding="utf-8") as handle:
        actions = [row["action"] for row in csv.DictReader(handle)]
    assert actions == ["user.add", "user.reset_password", "user.disable"]
    # The export itself is recorded too.
    assert audit.events(session, audit.AuditFilter())[0].action == "audit.export"


def test_ensure_admin_makes_a_first_admin_once_and_prints_its_password_once(cli: CliRunner) -> None:
    first = run(cli, "users", "ensure-admin")
    assert first.exit_code == 0, first.output
    assert "sign in as admin@localhost with password" in first.output
    second = run(cli, "users", "ensure-admin")
    assert second.exit_code == 0 and second.output == ""
    assert "admin@localhost" in run(cli, "users", "list").output
