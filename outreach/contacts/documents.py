"""Contacts' JSON documents as text, for list pages that pass them on unchanged.

``find_contacts_json`` builds each document in Python from four statements. On PostgreSQL the
server can build the same documents in the page's one statement, from the rows it already
reads: the API's contacts page then does no per-contact work in the web process, whose CPU is
what a page waits for when several are in flight (docs/benchmarks.md). SQLite takes the Python
path. The two agree field for field (tests/service/test_contacts_service.py).
"""

from __future__ import annotations

import json
from typing import Any, Unpack

from sqlalchemy import literal_column, select
from sqlalchemy.orm import Session

from outreach.contacts.service import JSON_COLUMNS, ContactFilters, contact_query, find_contacts_json
from outreach.db import is_postgres
from outreach.models import Category, Channel, ConsentState


def contact_documents(session: Session, **filters: Unpack[ContactFilters]) -> list[tuple[int, str]]:
    """``find_contacts_json`` as (id, the document as JSON text), in id order."""
    if not is_postgres(session):
        return [(doc["id"], _dumps(doc)) for doc in find_contacts_json(session, **filters)]
    page = contact_query(**filters).with_only_columns(*JSON_COLUMNS).subquery("page")
    statement = select(page.c.id, literal_column(DOCUMENT)).order_by(page.c.id)
    # Core, not the ORM's execution path: the rows are plain (id, text) pairs.
    return [(contact_id, document) for contact_id, document in session.connection().execute(statement)]


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _consent() -> str:
    """Each channel's categories as granted, revoked or none (``consent.view_of``), from the
    contact's consent rows (one per channel and category at most)."""
    view = f"CASE WHEN k.state = '{ConsentState.GRANTED}' THEN 'granted' ELSE 'revoked' END"
    channels = []
    for channel in map(str, Channel):
        categories = ", ".join(
            f"'{category}', coalesce(max({view}) FILTER "
            f"(WHERE k.channel = '{channel}' AND k.category = '{category}'), 'none')"
            for category in map(str, Category)
        )
        channels.append(f"'{channel}', json_build_object({categories})")
    return (
        f"(SELECT json_build_object({', '.join(channels)}) "  # noqa: S608 (the enums' values only)
        "FROM consents AS k WHERE k.contact_id = page.id)"
    )


# One contact's document from a row of JSON_COLUMNS named ``page``, fields in the order of
# service._documents. Written once, as SQL: building it as an expression at every request cost
# the web process more than running it. Every name and value in it is this module's own (S608
# is about input).
DOCUMENT = f"""json_build_object(
    'id', page.id, 'external_id', page.external_id,
    'first_name', page.first_name, 'last_name', page.last_name,
    'phone', page.phone, 'email', page.email, 'timezone', page.timezone, 'language', page.language,
    'tags', coalesce(
        (SELECT json_agg(t.tag ORDER BY t.tag) FROM contact_tags AS t WHERE t.contact_id = page.id), '[]'),
    'shared_phone', page.phone IS NOT NULL AND EXISTS (
        SELECT FROM contacts AS other WHERE other.phone = page.phone AND other.id <> page.id),
    'consent', {_consent()},
    'automation_paused', page.automation_paused_at IS NOT NULL
)::text"""  # noqa: S608
