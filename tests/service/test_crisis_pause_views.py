"""The crisis pause as staff see it: since when, by which reply, how to clear it, messages held."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from outreach.cli.app import app
from outreach.config import Settings
from outreach.models import InboxItem, Message
from tests.support.replies import add_contact, form, receive, schedule

# 03:00 Pacific: a crisis reply in the night, a reminder due the next afternoon.
NIGHT = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)
REMINDER_DUE = datetime(2026, 6, 10, 21, 0, tzinfo=UTC)


def _crisis(session: Session, factory: sessionmaker[Session], settings: Settings) -> tuple[int, int, int]:
    contact = add_contact(session)
    schedule(session, contact.id, "sms", "care", "reminder-24h", REMINDER_DUE)
    receive(factory, settings, form("I can't go on, I want to end it"), NIGHT)
    item_id = session.scalars(select(InboxItem.id).where(InboxItem.kind == "crisis")).one()
    reminder_id = session.scalars(select(Message.id).where(Message.idempotency_key == "reminder-24h")).one()
    session.commit()
    return contact.id, item_id, reminder_id


def test_contacts_show_says_since_when_by_which_reply_and_how_to_clear(
    cli: CliRunner, session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact_id, item_id, _ = _crisis(session, session_factory, settings)

    shown = cli.invoke(app, ["contacts", "show", str(contact_id)])

    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "paused since Wed 10 Jun 2026, 03:00 Pacific" in text
    assert f"inbox item {item_id}" in text
    assert f"outreach inbox clear-pause {contact_id}" in text
    document = json.loads(cli.invoke(app, ["contacts", "show", str(contact_id), "--json"]).stdout)
    assert document["pause"] == {
        "since": "2026-06-10T10:00:00+00:00",
        "inbound_message_id": document["pause"]["inbound_message_id"],
        "inbox_item_id": item_id,
        "clear_with": f"outreach inbox clear-pause {contact_id}",
    }


def test_a_paused_patients_automated_messages_read_held_not_scheduled(
    cli: CliRunner, session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact_id, item_id, reminder_id = _crisis(session, session_factory, settings)

    listing = cli.invoke(app, ["messages", "list", "--contact", str(contact_id)])
    assert listing.exit_code == 0, listing.output
    # The reminder is held; the crisis reply itself is a system message and does go at once.
    assert listing.stdout.count("held (crisis pause)") == 1 and listing.stdout.count("scheduled") == 1
    assert f"outreach inbox clear-pause {contact_id}" in " ".join(listing.stdout.split())

    rows = json.loads(cli.invoke(app, ["messages", "list", "--json", "--contact", str(contact_id)]).stdout)
    reminder = next(r for r in rows if r["id"] == reminder_id)
    # The stored state machine is untouched: only what staff read changes.
    assert (reminder["state"], reminder["shown_state"]) == ("scheduled", "held (crisis pause)")

    one = " ".join(cli.invoke(app, ["messages", "show", str(reminder_id)]).stdout.split())
    assert "state: held (crisis pause)" in one and f"inbox item {item_id}" in one

    crisis_item = " ".join(cli.invoke(app, ["inbox", "show", str(item_id)]).stdout.split())
    assert "paused since Wed 10 Jun 2026, 03:00 Pacific" in crisis_item
    assert f"outreach inbox clear-pause {contact_id}" in crisis_item


def test_clearing_the_pause_shows_the_messages_scheduled_again(
    cli: CliRunner, session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact_id, _, reminder_id = _crisis(session, session_factory, settings)

    assert cli.invoke(app, ["inbox", "clear-pause", str(contact_id), "--as", "Dr. Lee"]).exit_code == 0

    rows = json.loads(cli.invoke(app, ["messages", "list", "--json", "--contact", str(contact_id)]).stdout)
    assert next(r for r in rows if r["id"] == reminder_id)["shown_state"] == "scheduled"
    shown = cli.invoke(app, ["contacts", "show", str(contact_id)]).stdout
    assert "paused" not in shown


def test_the_pause_is_shown_before_the_replys_inbox_item_exists(
    cli: CliRunner, session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    from tests.support.replies import store

    contact = add_contact(session)
    store(session_factory, settings, form("I want to die"), NIGHT + timedelta(minutes=1))

    text = " ".join(cli.invoke(app, ["contacts", "show", str(contact.id)]).stdout.split())
    assert "paused since Wed 10 Jun 2026, 03:01 Pacific" in text and "being raised" in text
