"""CSV import on both databases: the file's quirks, every rejection reason, matching, consent."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bench.import_bench import write_sample_csv
from outreach.contacts import CsvUnusable, find_contacts
from outreach.models import Contact, Message, MessageState
from tests.support.contacts_csv import HEADER, events, run_import, stored, write


def test_bom_quoted_commas_blank_lines_and_mixed_case_headers(session: Session, tmp_path: Path) -> None:
    content = (
        " External ID ,FIRST NAME,last name,Phone,E-mail,Time Zone,Language,TAGS,"
        "SMS Consent,email_consent\r\n"
        'M1,Ann,"Lee, Jr.",(925) 289-1430,ann@example.org,,es,"vip;new patient",yes,\r\n'
        "\r\n"
        ",,,,,,,,,\r\n"
        'M2,"Bob ""Bobby""",Ray,,bob@example.org,America/Chicago,,,,"care;marketing"\r\n'
        "\r\n"
    )
    report = run_import(session, write(tmp_path, content, bom=True))
    assert (report.rows, report.added, report.rejected, report.exit_code) == (2, 2, 0, 0)
    ann, bob = stored(session)
    assert ann["external_id"] == "M1" and ann["last_name"] == "Lee, Jr."
    assert ann["phone"] == "+19252891430" and ann["language"] == "es"
    assert ann["timezone"] == "America/Los_Angeles"
    assert ann["tags"] == ["new patient", "vip"]
    assert ann["consent"]["sms"] == {"care": "granted", "education": "granted", "marketing": "none"}
    assert bob["first_name"] == 'Bob "Bobby"' and bob["timezone"] == "America/Chicago"
    assert bob["consent"]["email"] == {"care": "granted", "education": "none", "marketing": "granted"}
    assert bob["consent"]["sms"] == {"care": "none", "education": "none", "marketing": "none"}


def test_every_rejected_row_has_its_line_and_reason_and_good_rows_go_in(
    session: Session, tmp_path: Path
) -> None:
    content = "\n".join([
        HEADER,
        "M1,Ann,Lee,9252891430,,,,,,",  # line 2: good
        "M2,Bob,Ray,555-12,,,,,,",  # 3
        "M3,Cy,Doe,,not-an-email,,,,,",  # 4
        "M4,Di,Ko,9252891431,,Mars/Base,,,,",  # 5
        "M5,Ed,Yu,,,,,,,",  # 6
        "M1,Ann,Lee,9252891430,,,,,,",  # 7: same external_id as line 2
        ",Ann,LEE,(925) 289-1430,,,,,,",  # 8: same phone and name as line 2
        "M6,Fay,Oh,9252891432,,,,,maybe,",  # 9
        "M7,Gus,Li,9252891433,,,klingon language,,,",  # 10
        "M8,Hal,Bo,555-12,bad@,Nowhere/Zone,,,,",  # 11: three problems at once
        "M9,Ida,Ng,9252891434,,,,,,,surplus",  # 12: more fields than the header
        "M10,Jo,Wu,9252891435,jo@example.org,,,,no,yes",  # 13: good
    ]) + "\n"
    report = run_import(session, write(tmp_path, content))
    assert [(e.line, e.reason) for e in report.errors] == [
        (3, "invalid phone: 5 digits, a US number has 10"),
        (4, "invalid email"),
        (5, "unknown time zone"),
        (6, "no phone and no email"),
        (7, "duplicate of line 2"),
        (8, "duplicate of line 2"),
        (9, "unknown sms_consent value (use yes, no, or categories care, education, marketing "
            "separated by ;)"),
        (10, "invalid language"),
        (11, "invalid phone: 5 digits, a US number has 10; invalid email; unknown time zone"),
        (12, "11 fields, but the header has 10"),
    ]
    assert (report.added, report.rejected, report.exit_code) == (2, 10, 1)
    assert [c["external_id"] for c in stored(session)] == ["M1", "M10"]


def test_two_patients_with_different_external_ids_may_share_phone_and_name(
    session: Session, tmp_path: Path
) -> None:
    content = f"{HEADER}\nM1,Sam,Lee,9252891430,,,,,,\nM2,Sam,Lee,9252891430,,,,,,\n"
    report = run_import(session, write(tmp_path, content))
    assert (report.added, report.rejected) == (2, 0)
    assert all(c["shared_phone"] for c in stored(session))


def test_reimport_updates_instead_of_duplicating(session: Session, tmp_path: Path) -> None:
    first = f"{HEADER}\nM1,Ann,Lee,9252891430,ann@example.org,,,vip,yes,\n,Bob,Ray,9252891431,,,,,,\n"
    run_import(session, write(tmp_path, first))
    second = (
        f"{HEADER}\n"
        "M1,Ann,Lee-Smith,9252891439,,,es,,,\n"  # by external_id: new surname, phone, language
        "M2,bob,RAY,(925) 289-1431,bob@example.org,,,,,\n"  # by phone + name: gains an external_id
        "M3,Cy,Doe,9252891432,,,,,,\n"  # new
    )
    report = run_import(session, write(tmp_path, second, name="again.csv"))
    assert (report.added, report.updated, report.unchanged, report.rejected) == (1, 2, 0, 0)
    ann, bob, cy = stored(session)
    assert (ann["last_name"], ann["phone"], ann["language"]) == ("Lee-Smith", "+19252891439", "es")
    # Blank cells leave stored values alone.
    assert ann["email"] == "ann@example.org" and ann["tags"] == ["vip"]
    assert ann["consent"]["sms"]["care"] == "granted"
    assert (bob["external_id"], bob["email"], bob["first_name"]) == ("M2", "bob@example.org", "bob")
    assert cy["external_id"] == "M3"
    assert session.scalar(select(func.count()).select_from(Contact)) == 3
    again = run_import(session, write(tmp_path, second, name="again.csv"))
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)


def test_consent_is_recorded_only_when_it_changes_with_file_and_line_as_evidence(
    session: Session, tmp_path: Path
) -> None:
    content = f"{HEADER}\nM1,Ann,Lee,9252891430,ann@example.org,,,,yes,\n"
    run_import(session, write(tmp_path, content))
    run_import(session, write(tmp_path, content))
    recorded = events(session)
    assert [(e.channel, e.category, e.state, e.source) for e in recorded] == [
        ("sms", "care", "granted", "csv_import"),
        ("sms", "education", "granted", "csv_import"),
    ]
    assert recorded[0].evidence == "patients.csv line 2: sms_consent = yes"
    assert "Ann" not in recorded[0].evidence and "925" not in recorded[0].evidence

    revoke = f"{HEADER}\nM1,Ann,Lee,9252891430,ann@example.org,,,,no,\n"
    report = run_import(session, write(tmp_path, revoke, name="optout.csv"))
    assert report.consent_events == 3  # care and education revoked, marketing none -> revoked
    doc = stored(session)[0]
    assert doc["consent"]["sms"] == {"care": "revoked", "education": "revoked", "marketing": "revoked"}
    assert len(events(session)) == 5  # the history keeps the grants


def test_csv_revocation_cancels_pending_messages(session: Session, tmp_path: Path) -> None:
    run_import(session, write(tmp_path, f"{HEADER}\nM1,Ann,Lee,9252891430,,,,,yes,\n"))
    contact_id = session.scalars(select(Contact.id)).one()
    from datetime import UTC, datetime

    session.add(Message(contact_id=contact_id, channel="sms", category="education", template="t",
                        idempotency_key="k", due_at=datetime(2030, 1, 1, tzinfo=UTC),
                        state=MessageState.SCHEDULED))
    session.commit()
    run_import(session, write(tmp_path, f"{HEADER}\nM1,Ann,Lee,9252891430,,,,,no,\n"))
    assert session.scalars(select(Message.state)).one() == MessageState.CANCELLED


def test_rows_matching_one_contact_twice_are_rejected(session: Session, tmp_path: Path) -> None:
    run_import(session, write(tmp_path, f"{HEADER}\nM1,Ann,Lee,9252891430,,,,,,\n"))
    # Line 2 moves M1 to a new phone; line 3 (no external_id) still names Ann at the old one.
    content = f"{HEADER}\nM1,Ann,Lee,9252891439,,,,,,\n,Ann,Lee,9252891430,,,,,,\n"
    report = run_import(session, write(tmp_path, content))
    assert [(e.line, e.reason) for e in report.errors] == [(3, "matches the same contact as line 2")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("first_name,last_name\nAnn,Lee\n", "no phone or email column"),
        ("phone;email;first_name\n9252891430;a@example.org;Ann\n", "not comma-separated"),
        ("phone,Phone\n9252891430,9252891431\n", "column phone appears twice"),
    ],
)
def test_unusable_file_is_refused_with_exit_2(
    session: Session, tmp_path: Path, content: str, message: str
) -> None:
    with pytest.raises(CsvUnusable, match=message) as caught:
        run_import(session, write(tmp_path, content))
    assert caught.value.exit_code == 2


def test_file_that_turns_out_unusable_halfway_writes_nothing(session: Session, tmp_path: Path) -> None:
    good = "".join(f"M{n},Ann,Lee,92528{n:05d},,,,,yes,\n" for n in range(3000))
    path = tmp_path / "broken.csv"
    path.write_bytes(f"{HEADER}\n{good}".encode() + b"M9,\xff\xfe broken,Lee,9252891430,,,,,,\n")
    with pytest.raises(CsvUnusable, match="not UTF-8"):
        run_import(session, path, commit=False)
    assert session.scalar(select(func.count()).select_from(Contact)) == 0


def test_missing_file_is_unusable(session: Session, tmp_path: Path) -> None:
    with pytest.raises(CsvUnusable, match="cannot read"):
        run_import(session, tmp_path / "nope.csv")


def test_dry_run_reports_without_writing(session: Session, tmp_path: Path) -> None:
    report = run_import(session, write(tmp_path, f"{HEADER}\nM1,Ann,Lee,9252891430,,,,,yes,\n"), commit=False)
    assert report.added == 1
    assert session.scalar(select(func.count()).select_from(Contact)) == 0


def test_unknown_columns_are_ignored_and_reported(session: Session, tmp_path: Path) -> None:
    report = run_import(session, write(tmp_path, "phone,Date of Birth\n9252891430,1970-01-01\n"))
    assert report.ignored_columns == ["Date of Birth"] and report.added == 1


def test_parallel_validation_gives_the_same_result_as_inline(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "big.csv"
    write_sample_csv(path, 6000, seed=3)
    with path.open("a", encoding="utf-8") as out:
        out.write("M9999999,Bad,Row,555-12,,,,,,\n")
    with session_factory() as session:
        parallel = run_import(session, path, workers=2, commit=False)
        inline = run_import(session, path, workers=1, commit=False)
    assert parallel.as_dict() == inline.as_dict()
    assert parallel.added == 6000
    assert [(e.line, e.reason) for e in parallel.errors] == [
        (6002, "invalid phone: 5 digits, a US number has 10")
    ]


def test_row_without_phone_is_a_duplicate_of_an_earlier_row_with_the_same_email_and_name(
    session: Session, tmp_path: Path
) -> None:
    content = f"{HEADER}\n,Ann,Lee,9252891430,ann@example.org,,,,,\n,ann,lee,,ann@EXAMPLE.org,,,,,\n"
    report = run_import(session, write(tmp_path, content))
    assert [(e.line, e.reason) for e in report.errors] == [(3, "duplicate of line 2")]


def test_imported_timestamps_are_the_import_instant(session: Session, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from outreach.contacts import import_contacts_csv

    now = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    import_contacts_csv(session, write(tmp_path, f"{HEADER}\nM1,Ann,Lee,9252891430,,,,,yes,\n"),
                        clinic_timezone="UTC", now=now)
    session.commit()
    contact = session.scalars(select(Contact)).one()
    assert contact.created_at == now and contact.updated_at == now
    assert {e.occurred_at for e in events(session)} == {now}


def test_big_file_into_a_database_with_contacts_matches_them(
    session: Session, tmp_path: Path
) -> None:
    run_import(session, write(tmp_path, f"{HEADER}\nMRN0000001,Ann,Lee,9252891430,,,,,no,\n"))
    path = tmp_path / "big.csv"
    write_sample_csv(path, 5000, seed=5)
    report = run_import(session, path)
    assert (report.added, report.updated, report.rejected) == (4999, 1, 0)
    assert session.scalar(select(func.count()).select_from(Contact)) == 5000


_FOREIGN_KEYS = (
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE contype = 'f' UNION ALL "
    "SELECT tablename, indexname, indexdef FROM pg_indexes "
    "WHERE tablename IN ('contacts', 'contact_tags', 'consents', 'consent_events') ORDER BY 1, 2"
)


def test_initial_load_keeps_every_foreign_key(pg_url: str, tmp_path: Path) -> None:
    """A big first import checks foreign keys and builds the search index once at the end:
    afterwards (and after a dry run) the constraints and indexes are exactly as the migrations
    made them, and still enforced."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from outreach.db import make_engine, make_session_factory

    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    path = tmp_path / "big.csv"
    write_sample_csv(path, 4000, seed=9)
    try:
        with factory() as session:
            before = session.execute(text(_FOREIGN_KEYS)).all()
            run_import(session, path, commit=False)  # a dry run
            assert session.execute(text(_FOREIGN_KEYS)).all() == before
            report = run_import(session, path, workers=2)
            assert report.added == 4000 and report.consent_events > 4000
            assert session.execute(text(_FOREIGN_KEYS)).all() == before
            assert {"ix_contacts_search", "ix_contacts_phone", "ix_consent_events_contact"} <= {
                name for _, name, _ in before
            }
            someone = session.scalars(select(Contact).order_by(Contact.id.desc()).limit(1)).one()
            found = find_contacts(session, search=someone.last_name.upper(), limit=None)
            assert someone.id in {c.id for c in found}
            with pytest.raises(IntegrityError):
                session.execute(text("INSERT INTO contact_tags (contact_id, tag) VALUES (999999, 'x')"))
            session.rollback()
            session.execute(text("TRUNCATE contacts, contact_tags, consents, consent_events CASCADE"))
            session.commit()
            broken = tmp_path / "broken.csv"
            broken.write_bytes(path.read_bytes() + b"M9,\xff,Lee,9252891430,,,,,,\n")
            with pytest.raises(CsvUnusable):
                run_import(session, broken, workers=2)
            assert session.execute(text(_FOREIGN_KEYS)).all() == before
            assert session.scalar(select(func.count()).select_from(Contact)) == 0
    finally:
        engine.dispose()
