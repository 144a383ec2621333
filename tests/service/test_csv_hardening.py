"""Contacts CSV files with hostile or broken bytes: the bad row is named, the good rows go in.

On PostgreSQL a NUL in a text value fails the whole statement; these tests run on both
databases so that a NUL can never again abort an import there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from outreach.cli.app import app
from outreach.contacts import ContactInput, CsvUnusable, InvalidContact, add_contact
from outreach.contacts.importer import IGNORED_COLUMNS_SHOWN
from tests.support.contacts_csv import HEADER, run_import, stored, write
from tests.support.factories import STAMPED_AT

SECRET_PHONE = "(925) 289-1499"


def test_a_row_with_a_nul_is_reported_by_line_and_the_others_go_in(
    session: Session, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    content = "\n".join([
        HEADER,
        "M1,Ann,Lee,9252891430,,,,,,",
        f"M2,Bo\x00b,Ray,{SECRET_PHONE},,,,,,",  # line 3
        "M3,Cy,Doe,9252891432,,,,,,",
        "M4,Di,Ko,\x1b[2J9252891433,,,,,,",  # line 5: a terminal escape in the phone
    ]) + "\n"
    with caplog.at_level(logging.DEBUG):
        report = run_import(session, write(tmp_path, content))
    assert [(e.line, e.reason) for e in report.errors] == [
        (3, "first_name contains a control character (NUL)"),
        (5, "phone contains a control character (ESC)"),
    ]
    assert (report.added, report.rejected, report.exit_code) == (2, 2, 1)
    assert [c["external_id"] for c in stored(session)] == ["M1", "M3"]
    assert "289-1499" not in caplog.text and "2891499" not in caplog.text


def test_an_unterminated_quote_is_named_and_the_rows_before_it_go_in(
    session: Session, tmp_path: Path
) -> None:
    content = "\n".join([
        HEADER,
        "M1,Ann,Lee,9252891430,,,,,,",
        'M2,"Bob,Ray,9252891431,,,,,,',  # line 3: the quote never closes
        "M3,Cy,Doe,9252891432,,,,,,",
        "M4,Di,Ko,9252891433,,,,,,",
    ]) + "\n"
    report = run_import(session, write(tmp_path, content))
    assert [(e.line, e.reason) for e in report.errors] == [
        (3, 'unterminated quote (a " opened and never closed)')
    ]
    assert [c["external_id"] for c in stored(session)] == ["M1"]
    assert report.exit_code == 1


def test_a_quoted_cell_spanning_lines_at_the_end_is_not_mistaken_for_an_unterminated_quote(
    session: Session, tmp_path: Path
) -> None:
    content = HEADER + ',\nM1,Ann,Lee,9252891430,,,,"vip;\nnew",,\n'
    report = run_import(session, write(tmp_path, content))
    assert (report.added, report.rejected) == (1, 0)


def test_a_header_with_an_unterminated_quote_makes_the_file_unusable(
    session: Session, tmp_path: Path
) -> None:
    with pytest.raises(CsvUnusable, match="line 1: the header has an unterminated quote"):
        run_import(session, write(tmp_path, 'external_id,"phone\nM1,9252891430\n'))


def test_a_header_with_a_hundred_thousand_unknown_columns_is_summarised(
    cli: CliRunner, tmp_path: Path
) -> None:
    header = HEADER + "," + ",".join(f"extra{i}" for i in range(100_000))
    path = write(tmp_path, header + "\nM1,Ann,Lee,9252891430,,,,,,\n")
    result = cli.invoke(app, ["contacts", "import", str(path)])
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == IGNORED_COLUMNS_SHOWN + 1
    assert notes[-1] == f"note: {100_000 - IGNORED_COLUMNS_SHOWN} more columns are not ours and were ignored"
    assert "1 rows: 1 added" in result.stdout


def test_the_cli_keeps_its_exit_code_contract_for_a_nul_row(
    cli: CliRunner, tmp_path: Path
) -> None:
    content = f"{HEADER}\nM1,Ann,Lee,9252891430,,,,,,\nM2,Bob\x00,Ray,{SECRET_PHONE},,,,,,\n"
    result = cli.invoke(app, ["contacts", "import", str(write(tmp_path, content))])
    assert result.exit_code == 1
    assert "2 rows: 1 added" in result.stdout
    assert result.stderr.splitlines() == ["line 3: first_name contains a control character (NUL)"]


def test_a_contact_typed_with_control_characters_is_refused_by_field_and_nothing_is_written(
    session: Session,
) -> None:
    data = ContactInput(
        first_name="Ann\x00", last_name="L\x1b[31mee", phone="925\x00289 1430", tags=["vip\x07"]
    )
    with pytest.raises(InvalidContact) as refused:
        add_contact(session, data, clinic_timezone="America/Los_Angeles", now=STAMPED_AT)
    assert str(refused.value) == (
        "first_name contains a control character (NUL); last_name contains a control character (ESC); "
        "phone contains a control character (NUL); tags contains a control character (U+0007)"
    )
    session.rollback()
    assert stored(session) == []
