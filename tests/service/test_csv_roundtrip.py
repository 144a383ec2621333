"""Export writes the import format: export -> import into an empty database gives the same
contacts; random files never crash the importer."""

from __future__ import annotations

import csv
import io
import random
import shutil
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from outreach.contacts import CsvUnusable, export_contacts_csv
from outreach.db import make_engine, make_session_factory
from tests.support.contacts_csv import HEADER, run_import, stored, write

TRICKY = (
    f"{HEADER}\n"
    'M1,"=HYPERLINK(""http://x"")","Lee, Jr.",(925) 289-1430,ann@example.org,America/New_York,es,'
    '"vip;-urgent",care;marketing,no\n'
    ",Bob,+Ray,(925) 289-1430,,,,,yes,\n"  # shares Ann's phone, no external id
    "M3,Chloé,Müller,,chloe@example.org,,,,,yes\n"
    "M4,,,+44 20 7946 0958,,,,,,\n"
)


def _comparable(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "id"} for d in docs]


def test_export_then_import_into_an_empty_database_round_trips(
    session: Session, tmp_path: Path, sqlite_template: Path
) -> None:
    run_import(session, write(tmp_path, TRICKY))
    before = stored(session)
    exported = tmp_path / "export.csv"
    assert export_contacts_csv(session, exported) == 4
    assert exported.read_bytes().startswith(b"\xef\xbb\xbf")
    assert exported.stat().st_mode & 0o077 == 0  # patient data: readable by its owner only

    # Into a fresh database of the other kind too: the file is the interface.
    fresh = tmp_path / "fresh.sqlite"
    shutil.copyfile(sqlite_template, fresh)
    engine: Engine = make_engine(f"sqlite:///{fresh}")
    with make_session_factory(engine)() as other:
        report = run_import(other, exported)
        assert (report.added, report.rejected) == (4, 0)
        after = stored(other)
    engine.dispose()
    assert _comparable(after) == _comparable(before)

    # And back into the same database: everything matches, nothing changes.
    again = run_import(session, exported)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 4)


def test_export_keeps_formulas_inert(session: Session, tmp_path: Path) -> None:
    run_import(session, write(tmp_path, TRICKY))
    exported = tmp_path / "export.csv"
    export_contacts_csv(session, exported)
    rows = list(csv.reader(io.StringIO(exported.read_text(encoding="utf-8-sig"))))
    assert rows[0] == HEADER.split(",")
    assert rows[1][1] == "'=HYPERLINK(\"http://x\")"
    assert rows[1][7] == "'-urgent;vip"
    assert rows[1][8:] == ["care;marketing", "no"]


# Cells drawn from values that are valid, invalid and hostile, plus arbitrary text.
_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_cells = {
    "external_id": st.one_of(st.sampled_from(["", "M1", "M2", "M3", "x" * 70]), _text),
    "first_name": st.one_of(st.sampled_from(["", "Ann", "ANN", "Bob", "=cmd", "a" * 120]), _text),
    "last_name": st.sampled_from(["", "Lee", "Lee, Jr.", 'O"Brien', "Müller"]),
    "phone": st.one_of(
        st.sampled_from(["", "(925) 289-1430", "9252891430", "555-12", "+44 20 7946 0958", "+1", "ext 5"]),
        st.text(alphabet="0123456789()+-. x", max_size=16),
    ),
    "email": st.one_of(st.sampled_from(["", "a@example.org", "A@EXAMPLE.org", "bad@", "@x"]), _text),
    "timezone": st.sampled_from(["", "America/New_York", "america/chicago", "Mars/Base", "UTC"]),
    "language": st.sampled_from(["", "en", "es-mx", "klingon!"]),
    "tags": st.one_of(st.sampled_from(["", "vip", "a;b;;c", "t" * 70]), _text),
    "sms_consent": st.sampled_from(["", "yes", "no", "Y", "0", "care;marketing", "maybe", "no;care"]),
    "email_consent": st.sampled_from(["", "true", "false", "education", "yes;marketing", "?"]),
}
_row = st.fixed_dictionaries(_cells).map(lambda cells: list(cells.values()))
ROWS_PER_FILE = 400


@st.composite
def _file(draw: st.DrawFn) -> list[list[str]]:
    """ROWS_PER_FILE rows whose cells are mixed from up to 40 drawn rows: big files stay cheap
    to generate, and hypothesis still shrinks a failure to a few interesting cells."""
    pool = draw(st.lists(_row, min_size=1, max_size=40))
    rng = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    blank = draw(st.integers(min_value=0, max_value=5))
    rows = [[rng.choice(pool)[column] for column in range(len(_cells))] for _ in range(ROWS_PER_FILE)]
    for _ in range(blank):
        rows.insert(rng.randrange(len(rows) + 1), [""] * len(_cells))
    return rows


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER.split(","))
        writer.writerows(rows)


def test_random_rows_never_crash_the_importer(tmp_path: Path, db_url: str) -> None:
    """25 files of 400 rows (10k rows in all) into one database, so later files also meet the
    contacts earlier ones created."""
    engine = make_engine(db_url)
    factory: sessionmaker[Session] = make_session_factory(engine)
    seen = {"rows": 0}

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(rows=_file())
    def check(rows: list[list[str]]) -> None:
        path = tmp_path / "random.csv"
        _write_rows(path, rows)
        seen["rows"] += len(rows)
        with factory() as session:
            try:
                report = run_import(session, path)
            except CsvUnusable:
                # The csv module refuses NUL characters: the one way such a file is unusable.
                assert any("\x00" in cell for row in rows for cell in row)
                return
        nonblank = sum(1 for row in rows if "".join(row).strip())
        lines = path.read_text(encoding="utf-8").count("\n")
        assert report.rows == nonblank
        assert report.added + report.updated + report.unchanged + report.rejected == nonblank
        assert report.exit_code == (1 if report.rejected else 0)
        assert all(2 <= e.line <= lines and e.reason for e in report.errors)

    try:
        check()
    finally:
        engine.dispose()
    assert seen["rows"] >= 10_000
