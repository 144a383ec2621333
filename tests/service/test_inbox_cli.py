"""`outreach inbox ...` as staff use it, against a real database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from outreach.cli.app import app
from outreach.config import Settings
from outreach.models import Contact, Message
from tests.support.replies import add_contact, form, receive

NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)


def test_list_json_shows_items_with_contact_text_classification_urgency_and_state(
    cli: CliRunner, session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session)
    receive(session_factory, settings, form("I want to end it all"), NOW)
    receive(session_factory, settings, form("1"), NOW)

    result = cli.invoke(app, ["inbox", "list", "--json"])

    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert [(i["kind"], i["urgent"], i["classification"], i["state"]) for i in items] == [
        ("crisis", True, "crisis", "unread"), ("message", False, "confirm", "unread"),
    ]
    assert items[0]["contact_id"] == contact.id and items[0]["text"] == "I want to end it all"


def test_show_reply_handle_assign_and_clear_pause(
    cli: CliRunner, session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session)
    receive(session_factory, settings, form("I want to die"), NOW)
    receive(session_factory, settings, form("can we talk?"), NOW)
    items = json.loads(cli.invoke(app, ["inbox", "list", "--json"]).stdout)["items"]
    crisis_id, message_id = items[0]["id"], items[1]["id"]

    shown = cli.invoke(app, ["inbox", "show", str(message_id)])
    assert shown.exit_code == 0 and "can we talk?" in shown.stdout
    assert "Automated messages paused since" in shown.stdout

    replied = cli.invoke(app, ["inbox", "reply", str(message_id), "Calling you now", "--as", "Dr. Lee"])
    assert replied.exit_code == 0, replied.output
    session.expire_all()
    row = session.scalars(select(Message).where(Message.kind == "conversational")).one()
    assert row.body_override == "Calling you now" and row.contact_id == contact.id
    session.commit()

    assert cli.invoke(app, ["inbox", "assign", str(crisis_id), "Dr. Lee"]).exit_code == 0
    handled = cli.invoke(app, ["inbox", "handle", str(crisis_id), "--as", "Dr. Lee"])
    assert handled.exit_code == 0 and "still paused" in handled.stdout
    cleared = cli.invoke(app, ["inbox", "clear-pause", str(contact.id), "--as", "Dr. Lee"])
    assert cleared.exit_code == 0 and "resumes" in cleared.stdout
    session.expire_all()
    assert session.get_one(Contact, contact.id).automation_paused_at is None


def test_user_mistakes_are_one_line_errors_without_traceback(
    cli: CliRunner, session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session)
    receive(session_factory, settings, form("question"), NOW)
    receive(session_factory, settings, form("STOP"), NOW)
    item_id = json.loads(cli.invoke(app, ["inbox", "list", "--json"]).stdout)["items"][0]["id"]

    refused = cli.invoke(app, ["inbox", "reply", str(item_id), "hello"])
    assert refused.exit_code == 1
    assert "opted out" in refused.stderr and "Traceback" not in refused.output
    missing = cli.invoke(app, ["inbox", "show", "9999"])
    assert missing.exit_code == 1 and "inbox item 9999 does not exist" in missing.stderr
    bad_state = cli.invoke(app, ["inbox", "list", "--state", "closed"])
    assert bad_state.exit_code == 1 and "--state" in bad_state.stderr
