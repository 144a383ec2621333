"""Helpers for the contacts CSV tests: write a file, import it, read what is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.contacts import ImportReport, contacts_json, find_contacts, import_contacts_csv
from outreach.models import ConsentEvent, utcnow

CLINIC = "America/Los_Angeles"
HEADER = "external_id,first_name,last_name,phone,email,timezone,language,tags,sms_consent,email_consent"


def write(tmp_path: Path, content: str, name: str = "patients.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + content.encode("utf-8"))
    return path


def run_import(session: Session, path: Path, workers: int | None = 1, commit: bool = True) -> ImportReport:
    """Import as the CLI does: commit (or roll back for a dry run); roll back on any error."""
    try:
        report = import_contacts_csv(session, path, clinic_timezone=CLINIC, workers=workers, now=utcnow())
    except BaseException:
        session.rollback()
        raise
    if commit:
        session.commit()
    else:
        session.rollback()
    return report


def stored(session: Session) -> list[dict[str, Any]]:
    return contacts_json(session, find_contacts(session, limit=None))


def events(session: Session) -> list[ConsentEvent]:
    return list(session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)))
