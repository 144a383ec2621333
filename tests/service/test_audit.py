"""The audit trail: events are kept in the caller's transaction, read back, exported, never altered."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from outreach import audit
from outreach.models import AuditEvent

NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)
NURSE = audit.Actor(audit.ActorKind.USER, "nurse@clinic.example.org", "10.0.0.7")


def test_an_event_names_who_did_what_to_which_record_from_where(session: Session) -> None:
    with session.begin():
        audit.record(session, NURSE, "contact.view", NOW, subject_type="contact", subject_id=42)
    (event,) = audit.events(session, audit.AuditFilter(subject_type="contact", subject_id="42"))
    assert (event.actor_kind, event.actor, event.action, event.address) == (
        "user", "nurse@clinic.example.org", "contact.view", "10.0.0.7"
    )
    assert event.at == NOW


def test_an_event_rolls_back_with_the_change_it_describes(session: Session) -> None:
    with pytest.raises(RuntimeError), session.begin():
        audit.record(session, NURSE, "contact.update", NOW, subject_type="contact", subject_id=1)
        raise RuntimeError("the change failed")
    assert audit.events(session, audit.AuditFilter()) == []


def test_the_database_refuses_to_alter_or_delete_an_audit_row(session: Session) -> None:
    with session.begin():
        audit.record(session, NURSE, "contacts.export", NOW, detail={"rows": 3})
    with pytest.raises(DBAPIError, match="append-only"), session.begin():
        session.execute(update(AuditEvent).values(actor="someone-else"))
    with pytest.raises(DBAPIError, match="append-only"), session.begin():
        session.execute(delete(AuditEvent))
    (event,) = audit.events(session, audit.AuditFilter())
    assert event.actor == NURSE.name


def test_filters_and_newest_first_paging(session: Session) -> None:
    cli = audit.Actor(audit.ActorKind.CLI, "frontdesk")
    with session.begin():
        for minute in range(5):
            audit.record(session, NURSE, "contact.view", NOW + timedelta(minutes=minute), subject_id=minute)
        audit.record(session, cli, "contacts.import", NOW, detail={"accepted": 9, "rejected": 1})
    views = audit.events(session, audit.AuditFilter(action="contact.view"), limit=3)
    assert [e.subject_id for e in views] == ["4", "3", "2"]
    older = audit.events(session, audit.AuditFilter(action="contact.view"), before_id=views[-1].id)
    assert [e.subject_id for e in older] == ["1", "0"]
    by_cli = audit.events(session, audit.AuditFilter(actor="frontdesk"))
    assert [e.action for e in by_cli] == ["contacts.import"]
    later = audit.AuditFilter(since=NOW + timedelta(minutes=3))
    assert {e.subject_id for e in audit.events(session, later)} == {"3", "4"}


def test_export_is_csv_oldest_first_with_formulas_escaped(session: Session) -> None:
    sneaky = audit.Actor(audit.ActorKind.TOKEN, "=HYPERLINK(evil)")
    with session.begin():
        audit.record(session, NURSE, "contact.view", NOW, subject_type="contact", subject_id=7)
        audit.record(session, sneaky, "appointments.upsert", NOW + timedelta(seconds=1))
    out = io.StringIO()
    assert audit.export_csv(session, audit.AuditFilter(), out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == list(audit.CSV_COLUMNS)
    assert rows[1][1:7] == [NOW.isoformat(), "user", NURSE.name, "contact.view", "contact", "7"]
    assert rows[2][3] == "'=HYPERLINK(evil)"
