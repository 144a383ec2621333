"""``outreach contacts export``: every contact in the import format, so export → import round-trips.

Written with a byte-order mark (Excel then reads it as UTF-8) and Excel quoting; cells a
spreadsheet would run as a formula get a leading apostrophe, which import removes again.
Consent cells list the granted categories; "no" when nothing is granted but something was
revoked; blank when the patient was never asked.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.contacts.csvformat import COLUMNS, consent_cell_for, escape_cell
from outreach.errors import OutreachError
from outreach.models import Consent, Contact, ContactTag

BATCH = 2000


def export_contacts_csv(
    session: Session, path: Path, *, on_progress: Callable[[int], None] | None = None
) -> int:
    """Write all contacts to ``path`` (atomically: a crash leaves no half file). Returns the count."""
    path = path.resolve()
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutreachError(f"cannot write {path.name}: {exc.strerror or type(exc).__name__}") from None
    count = 0
    try:
        with os.fdopen(handle, "w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out, dialect="excel")
            writer.writerow(COLUMNS)
            last_id = 0
            while True:
                contacts = list(
                    session.execute(
                        select(Contact.id, Contact.external_id, Contact.first_name, Contact.last_name,
                               Contact.phone, Contact.email, Contact.timezone, Contact.language)
                        .where(Contact.id > last_id)
                        .order_by(Contact.id)
                        .limit(BATCH)
                    )
                )
                if not contacts:
                    break
                ids = [c.id for c in contacts]
                tags = _tags(session, ids)
                consents = _consents(session, ids)
                for c in contacts:
                    cells = [
                        escape_cell(c.external_id or ""),
                        escape_cell(c.first_name),
                        escape_cell(c.last_name),
                        c.phone or "",  # E.164 always starts with "+": harmless, and left as is
                        escape_cell(c.email or ""),
                        c.timezone,
                        c.language,
                        escape_cell(";".join(tags.get(c.id, []))),
                        consent_cell_for(consents.get((c.id, "sms"), {})),
                        consent_cell_for(consents.get((c.id, "email"), {})),
                    ]
                    writer.writerow(cells)
                count += len(contacts)
                last_id = ids[-1]
                if on_progress is not None:
                    on_progress(count)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count


def _tags(session: Session, ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = defaultdict(list)
    query = (
        select(ContactTag.contact_id, ContactTag.tag)
        .where(ContactTag.contact_id.in_(ids))
        .order_by(ContactTag.contact_id, ContactTag.tag)
    )
    for contact_id, tag in session.execute(query):
        found[contact_id].append(tag)
    return found


def _consents(session: Session, ids: list[int]) -> dict[tuple[int, str], dict[str, str]]:
    found: dict[tuple[int, str], dict[str, str]] = defaultdict(dict)
    query = select(Consent.contact_id, Consent.channel, Consent.category, Consent.state).where(
        Consent.contact_id.in_(ids)
    )
    for contact_id, channel, category, state in session.execute(query):
        found[(contact_id, channel)][category] = state
    return found
