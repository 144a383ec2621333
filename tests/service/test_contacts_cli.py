"""`outreach contacts ...` as a user runs it: exit codes, stdout vs stderr, one JSON document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from outreach.cli.app import app
from outreach.models import ConsentEvent
from tests.support.contacts_csv import HEADER, write

GOOD = f"{HEADER}\nM1,Ann,Lee,(925) 289-1430,ann@example.org,,,vip,yes,\n,Bob,Lee,925-289-1430,,,,,,\n"


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, ["contacts", *args])


def test_import_of_a_clean_file_exits_0(cli: CliRunner, tmp_path: Path) -> None:
    result = run(cli, "import", str(write(tmp_path, GOOD)))
    assert result.exit_code == 0, result.stderr
    assert "2 rows: 2 added, 0 updated, 0 unchanged, 0 rejected" in result.stdout
    assert result.stderr == ""


def test_import_records_consent_on_the_process_clock(
    cli: CliRunner, tmp_path: Path, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A demo or a test run at a fixed hour: the ledger says when the process says it is.
    monkeypatch.setenv("OUTREACH_CLOCK", "2031-01-15T11:00:00+00:00")
    result = run(cli, "import", str(write(tmp_path, GOOD)))
    assert result.exit_code == 0, result.stderr
    recorded = session.scalars(select(ConsentEvent.occurred_at)).all()
    assert recorded and {at.astimezone(UTC).date() for at in recorded} == {date(2031, 1, 15)}


def test_import_with_bad_rows_exits_1_and_names_them_on_stderr(cli: CliRunner, tmp_path: Path) -> None:
    content = GOOD + "M3,Cy,Doe,555-12,,,,,,\nM4,Di,Ko,,,,,,,\n"
    errors = tmp_path / "errors.csv"
    result = run(cli, "import", str(write(tmp_path, content)), "--errors-csv", str(errors))
    assert result.exit_code == 1
    short = "invalid phone: 5 digits, a US number has 10"  # why, never the digits themselves
    assert result.stderr.splitlines() == [f"line 4: {short}", "line 5: no phone and no email"]
    assert "555-12" not in result.stderr
    assert "2 added" in result.stdout and "2 rejected" in result.stdout
    assert errors.read_text().splitlines() == ["line,reason", f'4,"{short}"', "5,no phone and no email"]


def test_unusable_file_exits_2_without_traceback_and_writes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    result = run(cli, "import", str(write(tmp_path, "first_name\nAnn\n")))
    assert result.exit_code == 2
    assert "no phone or email column" in result.stderr and "Traceback" not in result.stderr
    half_bad = tmp_path / "half.csv"
    half_bad.write_bytes(GOOD.encode() + b"M9,\xff,Lee,9252891431,,,,,,\n")
    result = run(cli, "import", str(half_bad))
    assert result.exit_code == 2 and "not UTF-8" in result.stderr
    listed = run(cli, "list", "--json")
    assert json.loads(listed.stdout) == []


def test_dry_run_writes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    result = run(cli, "import", str(write(tmp_path, GOOD)), "--dry-run")
    assert result.exit_code == 0 and "dry run, nothing written" in result.stdout
    assert json.loads(run(cli, "list", "--json").stdout) == []


def test_list_and_show_json_shape(cli: CliRunner, tmp_path: Path) -> None:
    run(cli, "import", str(write(tmp_path, GOOD)))
    listed = run(cli, "list", "--json")
    assert listed.exit_code == 0
    documents = json.loads(listed.stdout)
    assert [d["id"] for d in documents] == [1, 2]
    ann = documents[0]
    assert set(ann) >= {"id", "external_id", "first_name", "last_name", "phone", "email", "timezone",
                        "language", "tags", "shared_phone", "consent"}
    assert ann["shared_phone"] is True
    assert ann["consent"] == {
        "sms": {"care": "granted", "education": "granted", "marketing": "none"},
        "email": {"care": "none", "education": "none", "marketing": "none"},
    }
    shown = run(cli, "show", "ext:M1", "--json")
    # `show` adds the crisis pause (none here) to what `list` shows.
    assert json.loads(shown.stdout) == {**ann, "pause": None}
    assert run(cli, "list", "--tag", "vip", "--json").stdout.count('"id"') == 1


def test_show_unknown_contact_fails_cleanly(cli: CliRunner) -> None:
    result = run(cli, "show", "42")
    assert result.exit_code == 1 and "no such contact" in result.stderr


def test_add_then_consent_grant_and_revoke(cli: CliRunner) -> None:
    added = run(cli, "add", "--first-name", "Ann", "--phone", "(212) 555-0199", "--tag", "vip", "--json")
    assert added.exit_code == 0, added.stderr
    doc = json.loads(added.stdout)
    assert (doc["phone"], doc["timezone"], doc["tags"]) == ("+12125550199", "America/New_York", ["vip"])
    granted = run(cli, "consent", str(doc["id"]), "--channel", "sms", "--category", "care",
                  "--category", "education", "--grant", "--evidence", "Verbal, phone call", "--by", "Maria",
                  "--json")
    assert granted.exit_code == 0, granted.stderr
    assert json.loads(granted.stdout)["consent"]["sms"]["education"] == "granted"
    revoked = run(cli, "consent", str(doc["id"]), "--channel", "sms", "--category", "education",
                  "--revoke", "--evidence", "Asked to stop newsletters", "--by", "Maria")
    assert revoked.exit_code == 0 and "education revoked" in revoked.stdout
    shown = json.loads(run(cli, "show", str(doc["id"]), "--json").stdout)
    assert shown["consent"]["sms"] == {"care": "granted", "education": "revoked", "marketing": "none"}


def test_add_with_bad_fields_names_them(cli: CliRunner) -> None:
    result = run(cli, "add", "--phone", "12", "--email", "x@", "--timezone", "Nowhere")
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())  # the terminal wraps long lines
    assert "invalid phone: 2 digits, a US number has 10; invalid email; unknown time zone" in said


def test_consent_needs_grant_or_revoke(cli: CliRunner) -> None:
    run(cli, "add", "--phone", "9252891430")
    result = run(cli, "consent", "1", "--channel", "sms", "--category", "care",
                 "--evidence", "x", "--by", "y")
    assert result.exit_code == 1 and "--grant or --revoke" in result.stderr


def test_export_writes_the_import_format(cli: CliRunner, tmp_path: Path) -> None:
    run(cli, "import", str(write(tmp_path, GOOD)))
    out = tmp_path / "out.csv"
    result = run(cli, "export", str(out))
    assert result.exit_code == 0 and "2 contacts written" in result.stdout
    assert out.read_text(encoding="utf-8-sig").splitlines()[0] == HEADER


def test_real_command_imports_a_big_file_in_parallel(db_url: str, tmp_path: Path) -> None:
    """The installed console script, worker processes and all (the file is big enough for them)."""
    from bench.import_bench import write_sample_csv

    path = tmp_path / "big.csv"
    write_sample_csv(path, 4000, seed=11)
    env = {**os.environ, "OUTREACH_DATABASE_URL": db_url}
    done = subprocess.run(
        [sys.executable, "-m", "outreach.cli.app", "contacts", "import", str(path)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "4000 rows: 4000 added" in done.stdout


def test_export_to_a_missing_directory_fails_cleanly(cli: CliRunner, tmp_path: Path) -> None:
    result = run(cli, "export", str(tmp_path / "no" / "such" / "dir" / "out.csv"))
    assert result.exit_code == 1 and "cannot write out.csv" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_limit_zero_lists_everyone(cli: CliRunner, tmp_path: Path) -> None:
    rows = "".join(f"M{n},Pat,Doe,92528{n:05d},,,,,,\n" for n in range(60))
    run(cli, "import", str(write(tmp_path, f"{HEADER}\n{rows}")))
    assert len(json.loads(run(cli, "list", "--json").stdout)) == 50
    assert len(json.loads(run(cli, "list", "--limit", "0", "--json").stdout)) == 60
