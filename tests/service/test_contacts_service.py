"""The contacts service on both databases: add, update, find, JSON view, consent, the ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from outreach.contacts import (
    ContactInput,
    InvalidContact,
    add_contact,
    change_consent,
    contact_id_of,
    contact_json,
    contacts_json,
    find_contacts,
    find_contacts_json,
    get_contact,
    update_contact,
)
from outreach.contacts.documents import contact_documents
from outreach.errors import NotFound, OutreachError
from outreach.models import ConsentEvent, Contact, Message, MessageState
from tests.support.factories import STAMPED_AT

CLINIC = "America/Los_Angeles"
# Well away from the wall clock, so a timestamp that came from it shows.
NOW = datetime(2025, 6, 10, 16, 0, tzinfo=UTC)


def _add(session: Session, **fields: object) -> int:
    contact = add_contact(session, ContactInput(**fields), clinic_timezone=CLINIC, now=NOW)  # type: ignore[arg-type]
    session.commit()
    return contact.id


def test_added_contact_is_normalised_and_zoned_from_its_phone(session: Session) -> None:
    contact_id = _add(session, first_name=" Ann ", last_name="Lee", phone="(212) 555-0199",
                      email="Ann@Example.ORG", tags=["VIP", "new"])
    doc = contact_json(session, get_contact(session, contact_id))
    assert doc["phone"] == "+12125550199"
    assert doc["email"] == "Ann@example.org"
    assert doc["timezone"] == "America/New_York"
    assert doc["language"] == "en"
    assert doc["first_name"] == "Ann"
    assert doc["tags"] == ["new", "vip"]
    assert doc["shared_phone"] is False
    assert doc["consent"] == {
        "sms": {"care": "none", "education": "none", "marketing": "none"},
        "email": {"care": "none", "education": "none", "marketing": "none"},
    }


def test_a_contact_is_stamped_with_the_callers_now_not_the_wall_clock(session: Session) -> None:
    contact_id = _add(session, first_name="Ann", phone="9252891430")
    contact = get_contact(session, contact_id)
    assert (contact.created_at, contact.updated_at) == (NOW, NOW)
    later = NOW + timedelta(hours=3)
    update_contact(session, contact, ContactInput(last_name="Lee"), now=later)
    session.commit()
    session.expire_all()
    contact = get_contact(session, contact_id)
    assert (contact.created_at, contact.updated_at) == (NOW, later)


def test_contact_without_phone_or_email_is_refused(session: Session) -> None:
    with pytest.raises(InvalidContact, match="needs a phone or an email"):
        add_contact(session, ContactInput(first_name="Ann"), clinic_timezone=CLINIC, now=NOW)


def test_every_bad_field_is_named_and_no_value_is_echoed(session: Session) -> None:
    with pytest.raises(InvalidContact) as caught:
        add_contact(session, ContactInput(phone="555-12", email="ann@", timezone="Mars/Base"),
                    clinic_timezone=CLINIC, now=NOW)
    message = str(caught.value)
    assert "invalid phone" in message and "invalid email" in message and "unknown time zone" in message
    assert "555-12" not in message and "ann@" not in message


def test_external_id_is_unique(session: Session) -> None:
    first = _add(session, phone="9252891430", external_id="MRN-1")
    with pytest.raises(InvalidContact, match=f"already belongs to contact {first}") as caught:
        add_contact(
            session, ContactInput(phone="9252891431", external_id="MRN-1"), clinic_timezone=CLINIC, now=NOW
        )
    assert "MRN-1" not in str(caught.value)


def test_family_sharing_a_phone_is_allowed_and_flagged(session: Session) -> None:
    mother = _add(session, first_name="Rosa", phone="(925) 289-1430")
    son = _add(session, first_name="Tomás", phone="925-289-1430")
    other = _add(session, first_name="Ann", phone="925-289-1499")
    docs = {d["id"]: d for d in contacts_json(session, find_contacts(session))}
    assert docs[mother]["shared_phone"] and docs[son]["shared_phone"]
    assert not docs[other]["shared_phone"]
    assert contact_json(session, get_contact(session, son))["shared_phone"] is True


def test_list_pages_show_what_each_contact_shows(session: Session) -> None:
    """The lists' lean path (no mapped objects) gives each contact's own JSON, filters kept."""
    rosa = _add(session, first_name="Rosa", phone="(925) 289-1430", tags=["vip", "course"])
    _add(session, first_name="Tomás", phone="925-289-1430", email="t@example.org")
    ann = _add(session, first_name="Ann", email="ann@example.org", tags=["vip"])
    change_consent(session, rosa, "sms", ["care"], grant=True, wording="verbal", recorded_by="staff",
                   now=STAMPED_AT)
    change_consent(session, ann, "email", ["education"], grant=False, wording="asked", recorded_by="staff",
                   now=STAMPED_AT)
    session.commit()
    whole = [contact_json(session, c) for c in find_contacts(session)]
    assert find_contacts_json(session) == whole
    assert whole[0]["tags"] == ["course", "vip"] and whole[0]["consent"]["sms"]["care"] == "granted"
    assert whole[2]["consent"]["email"]["education"] == "revoked" and whole[0]["shared_phone"]
    assert [d["id"] for d in find_contacts_json(session, tag="vip", after_id=rosa)] == [ann]
    assert [d["id"] for d in find_contacts_json(session, consent_to=("sms", "care"))] == [rosa]
    assert find_contacts_json(session, search="nobody") == []


def _documents(session: Session, **filters: object) -> list[dict[str, object]]:
    """``contact_documents`` read back, checking each id against its document's."""
    found = contact_documents(session, **filters)  # type: ignore[arg-type]
    docs = [json.loads(text) for _, text in found]
    assert [contact_id for contact_id, _ in found] == [doc["id"] for doc in docs]
    return docs


def test_documents_as_text_are_the_list_pages_documents(session: Session) -> None:
    """The API's contacts page passes on documents as text (built by PostgreSQL there): the
    same documents as ``find_contacts_json``, field for field, with every filter."""
    rosa = _add(session, first_name="Rosa \"Ro\" O'Neil", last_name="Núñez 😀", phone="(925) 289-1430",
                tags=["vip", "course", "Beta"], external_id="MRN-1")
    tomas = _add(session, first_name="Tomás", phone="925-289-1430", email="t@example.org", language="es")
    ann = _add(session, first_name="Ann", last_name="Back\\slash", email="ann@example.org", tags=["vip"])
    _add(session, first_name="Lone", phone="925-289-1499", email="lone@example.org")
    for channel, categories, grant in (("sms", ["care", "education"], True), ("email", ["marketing"], False)):
        change_consent(session, rosa, channel, categories, grant=grant, wording="verbal", recorded_by="staff",
                       now=STAMPED_AT)
    change_consent(session, ann, "email", ["care"], grant=True, wording="form", recorded_by="staff",
                   now=STAMPED_AT)
    change_consent(session, ann, "email", ["care"], grant=False, wording="asked", recorded_by="staff",
                   now=STAMPED_AT)
    session.execute(update(Contact).where(Contact.id == tomas).values(automation_paused_at=STAMPED_AT))
    session.commit()
    everyone = find_contacts_json(session)
    assert _documents(session) == everyone
    assert everyone[0]["consent"]["email"]["marketing"] == "revoked" and everyone[0]["shared_phone"]
    assert everyone[1]["automation_paused"] is True and everyone[2]["consent"]["email"]["care"] == "revoked"
    assert everyone[3]["tags"] == [] and everyone[3]["shared_phone"] is False
    for filters in (
        {"tag": "vip", "after_id": rosa},
        {"consent_to": ("sms", "education")},
        {"search": "núñez"},
        {"search": "nobody"},
        {"after_id": rosa, "limit": 2},
    ):
        assert _documents(session, **filters) == find_contacts_json(session, **filters), filters


def test_update_changes_only_given_fields(session: Session) -> None:
    contact_id = _add(session, first_name="Ann", last_name="Lee", phone="9252891430", email="a@example.org")
    contact = get_contact(session, contact_id)
    update_contact(session, contact, ContactInput(last_name="Lee-Smith", email="", tags=["moved"]), now=NOW)
    session.commit()
    doc = contact_json(session, get_contact(session, contact_id))
    assert (doc["first_name"], doc["last_name"]) == ("Ann", "Lee-Smith")
    assert (doc["email"], doc["tags"]) == (None, ["moved"])
    with pytest.raises(InvalidContact, match="needs a phone or an email"):
        update_contact(session, contact, ContactInput(phone=""), now=NOW)


def test_find_by_search_tag_phone_and_external_id(session: Session) -> None:
    ann = _add(session, first_name="Ann", last_name="Lee", phone="9252891430", tags=["vip"], external_id="M7")
    _add(session, first_name="Bob", last_name="Ray", email="bob@example.org")
    assert [c.id for c in find_contacts(session, search="ann l")] == [ann]
    assert [c.id for c in find_contacts(session, tag="VIP")] == [ann]
    assert [c.id for c in find_contacts(session, phone="(925) 289-1430")] == [ann]
    assert get_contact(session, "ext:M7").id == ann
    assert get_contact(session, str(ann)).id == ann
    assert contact_id_of(session, "ext:M7") == contact_id_of(session, ann) == ann
    with pytest.raises(NotFound):
        contact_id_of(session, "ext:nobody")
    with pytest.raises(NotFound):
        get_contact(session, "ext:nobody")
    with pytest.raises(NotFound):
        get_contact(session, "ann")


def test_staff_consent_is_recorded_with_evidence(session: Session) -> None:
    contact_id = _add(session, phone="9252891430")
    change_consent(session, contact_id, "sms", ["care", "marketing"], grant=True,
                   wording="Signed intake form, page 2", recorded_by="front desk: Maria", now=STAMPED_AT)
    session.commit()
    doc = contact_json(session, get_contact(session, contact_id))
    assert doc["consent"]["sms"] == {"care": "granted", "education": "none", "marketing": "granted"}
    events = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
    assert [(e.category, e.state, e.source, e.evidence, e.recorded_by) for e in events] == [
        ("care", "granted", "staff", "Signed intake form, page 2", "front desk: Maria"),
        ("marketing", "granted", "staff", "Signed intake form, page 2", "front desk: Maria"),
    ]


def test_consent_without_evidence_or_recorder_is_refused(session: Session) -> None:
    contact_id = _add(session, phone="9252891430")
    with pytest.raises(OutreachError, match="evidence"):
        change_consent(session, contact_id, "sms", ["care"], grant=True, wording=" ", recorded_by="x",
                   now=STAMPED_AT)
    with pytest.raises(OutreachError, match="who"):
        change_consent(session, contact_id, "sms", ["care"], grant=True, wording="said so", recorded_by="",
                   now=STAMPED_AT)
    with pytest.raises(OutreachError, match="channel is sms or email"):
        change_consent(session, contact_id, "fax", ["care"], grant=True, wording="w", recorded_by="x",
                   now=STAMPED_AT)


def test_staff_revocation_cancels_pending_messages_on_that_channel(session: Session) -> None:
    contact_id = _add(session, phone="9252891430", email="a@example.org")
    change_consent(session, contact_id, "sms", ["care"], grant=True, wording="form", recorded_by="x",
                   now=STAMPED_AT)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for key, channel in (("sms-1", "sms"), ("email-1", "email")):
        session.add(Message(contact_id=contact_id, channel=channel, category="care", template="t",
                            idempotency_key=key, due_at=now, state=MessageState.SCHEDULED))
    session.commit()
    change_consent(session, contact_id, "sms", ["care"], grant=False, wording="called to opt out",
                   recorded_by="x", now=now)
    session.commit()
    states = {row.channel: row.state for row in session.execute(select(Message.channel, Message.state))}
    assert states == {"sms": MessageState.CANCELLED, "email": MessageState.SCHEDULED}


def test_consent_history_refuses_update_and_delete(session: Session) -> None:
    contact_id = _add(session, phone="9252891430")
    change_consent(session, contact_id, "sms", ["care"], grant=True, wording="form", recorded_by="x",
                   now=STAMPED_AT)
    change_consent(session, contact_id, "sms", ["care"], grant=False, wording="STOP", recorded_by="x",
                   now=STAMPED_AT)
    session.commit()
    for statement in (
        update(ConsentEvent).values(state="granted"),
        delete(ConsentEvent),
        text("UPDATE consent_events SET evidence = 'rewritten'"),
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(statement)
        session.rollback()
    assert session.scalar(select(func.count()).select_from(ConsentEvent)) == 2
    assert session.scalars(select(ConsentEvent.evidence).order_by(ConsentEvent.id)).all() == ["form", "STOP"]
