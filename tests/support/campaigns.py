"""Helpers for campaign, enrollment and template tests: contacts with consent, campaign files."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.config import Settings, load_settings
from outreach.contacts import consent
from outreach.models import ConsentSource, Contact, ContactTag, Message, utcnow

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"

SMALL_CAMPAIGN = """\
slug: demo
name: Demo series
category: education
steps:
  - key: first
    channel: email
    template: email/education/ketamine/01_what_it_is
    day: 0
    at: "10:00"
  - key: nudge
    channel: sms
    template: sms/education/ketamine/nudge
    day: 2
    at: "12:00"
  - key: second
    channel: email
    template: email/education/ketamine/02_how_it_works
    day: 4
    at: "10:00"
"""


def copy_templates(tmp_path: Path, db_url: str, *, campaigns: dict[str, str] | None = None) -> Settings:
    """A private copy of the real templates (so a test may edit campaign files) and its settings."""
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    if campaigns is not None:
        for old in (target / "campaigns").glob("*.yaml"):
            old.unlink()
        for name, text in campaigns.items():
            (target / "campaigns" / f"{name}.yaml").write_text(text)
    return load_settings(database_url=db_url, templates_dir=target)


def write_campaign(settings: Settings, name: str, text: str) -> None:
    (Path(settings.templates_dir) / "campaigns" / f"{name}.yaml").write_text(text)


def add_contact(
    session: Session,
    *,
    first_name: str = "Dana",
    timezone: str = "America/Los_Angeles",
    phone: str | None = "+14155550100",
    email: str | None = "dana@example.org",
    consents: dict[str, Iterable[str]] | None = None,
    tags: Iterable[str] = (),
) -> int:
    """A contact; ``consents`` maps channel to the categories granted (default: everything)."""
    contact = Contact(first_name=first_name, timezone=timezone, phone=phone, email=email)
    contact.tags = [ContactTag(tag=t) for t in tags]
    session.add(contact)
    session.flush()
    granted = consents if consents is not None else {
        "sms": ["care", "education", "marketing"],
        "email": ["care", "education", "marketing"],
    }
    evidence = consent.Evidence(ConsentSource.STAFF, "test fixture", occurred_at=utcnow())
    for channel, categories in granted.items():
        consent.grant(session, contact.id, channel, list(categories), evidence)
    return contact.id


def messages_of(session: Session, contact_id: int) -> list[Message]:
    query = select(Message).where(Message.contact_id == contact_id).order_by(Message.due_at, Message.id)
    return list(session.scalars(query))


def utc(text: str) -> datetime:
    """``"2026-03-02 17:00"`` as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
