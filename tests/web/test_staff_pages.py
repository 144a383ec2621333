"""The staff screens through HTTP: what the front desk sees and what their clicks change."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from outreach import appointments, audit
from outreach.campaigns import sync
from outreach.config import Settings, load_settings
from outreach.models import Appointment, ConsentEvent, Contact, InboxItem, Message
from outreach.web.staff import contact_files
from tests.support.appointments import la
from tests.support.replies import add_contact, form, receive
from tests.support.staffweb import NOW, STAFF, Clock, sign_in, staff_app

T = TypeVar("T")
HEADER = "external_id,first_name,last_name,phone,email,timezone,language,tags,sms_consent,email_consent"


@pytest.fixture
def csrf(client: TestClient) -> str:
    return sign_in(client, STAFF)


def fetch(session: Session, statement: Select[T]) -> list[T]:
    """Read, then end the transaction: on SQLite an open one would block the app's writes."""
    rows = list(session.scalars(statement.execution_options(populate_existing=True)))
    session.commit()  # keeps the rows loaded (expire_on_commit is off), unlike a rollback
    return rows


def actions(session: Session, **where: str) -> list[str]:
    found = [e.action for e in reversed(audit.events(session, audit.AuditFilter(**where)))]  # type: ignore[arg-type]
    session.commit()
    return found


def book_a_visit(session: Session, settings: Settings) -> None:
    """Ana's infusion on Friday 12 June 2026 at 9:30 in California, with its reminders."""
    contact = add_contact(session)
    with session.begin():
        appointments.book(
            session,
            settings,
            contact_id=contact.id,
            starts_at=la(2026, 6, 12, 9, 30),
            type="infusion",
            now=NOW,
        )


def crisis_item(session: Session, factory: sessionmaker[Session], settings: Settings, at: datetime) -> int:
    add_contact(session)
    receive(factory, settings, form("I want to end it all"), at)
    (item_id,) = fetch(session, select(InboxItem.id).where(InboxItem.urgent.is_(True)))
    return item_id


def test_a_crisis_reply_is_first_on_the_dashboard_and_its_alert_link_opens_the_thread(
    client: TestClient,
    csrf: str,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    item_id = crisis_item(session, session_factory, settings, NOW - timedelta(minutes=5))
    dashboard = client.get("/").text
    assert dashboard.index("Urgent</span>") < dashboard.index("Replies waiting")
    assert f'href="/inbox/{item_id}"' in dashboard and "I want to end it all" in dashboard
    page = client.get(f"/inbox/{item_id}")
    assert page.status_code == 200
    assert "Automated messages are paused" in page.text
    # 17:55 UTC is 10:55 in California, written out in the clinic's zone.
    assert "Wed 10 Jun 2026, 10:55 Pacific" in page.text
    assert actions(session, subject_type="inbox_item") == ["inbox.view"]


NOBODY_ON_CALL = "No one is alerted when a patient sends a crisis text."


def test_the_dashboard_says_when_a_crisis_text_would_page_nobody(client: TestClient, csrf: str) -> None:
    assert NOBODY_ON_CALL in client.get("/").text


@pytest.mark.parametrize(
    "on_call", [{"oncall_sms": ["+19255550199"]}, {"oncall_email": ["oncall@clinic.example.org"]}]
)
def test_the_dashboard_says_nothing_of_it_with_someone_on_call(
    settings: Settings, session_factory: sessionmaker[Session], on_call: dict[str, list[str]]
) -> None:
    configured = load_settings(
        database_url=settings.database_url, templates_dir=settings.templates_dir, **on_call
    )
    with TestClient(staff_app(configured, session_factory, Clock())) as client:
        sign_in(client, STAFF)
        page = client.get("/").text
    assert "<h2>Urgent</h2>" in page and NOBODY_ON_CALL not in page


def test_a_reply_inside_the_conversation_window_is_queued_to_go_out_now(
    client: TestClient,
    csrf: str,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    item_id = crisis_item(session, session_factory, settings, NOW - timedelta(minutes=5))
    page = client.get(f"/inbox/{item_id}")
    assert "a reply goes out now, at any hour" in page.text
    response = client.post(
        f"/inbox/{item_id}/reply", data={"reply": "We are calling you now.", "csrf_token": csrf}
    )
    assert "Your reply is queued." in response.text
    (reply,) = fetch(session, select(Message).where(Message.kind == "conversational"))
    assert reply.body_override == "We are calling you now." and reply.due_at == NOW
    assert "inbox.reply" in actions(session, subject_type="inbox_item")


def test_a_late_reply_says_it_waits_for_the_sending_window(
    client: TestClient,
    csrf: str,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    add_contact(session)
    receive(session_factory, settings, form("Can I bring my partner?"), NOW - timedelta(hours=6))
    (item_id,) = fetch(session, select(InboxItem.id))
    page = client.get(f"/inbox/{item_id}").text
    assert "more than 4 hours ago, so a reply waits for the sending window (08:00 to 20:00" in page
    response = client.post(f"/inbox/{item_id}/reply", data={"reply": "Yes, of course.", "csrf_token": csrf})
    assert "will go out in the patient's sending window" in html.unescape(response.text)


def test_an_empty_reply_comes_back_with_an_error_linked_to_the_field(
    client: TestClient,
    csrf: str,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    item_id = crisis_item(session, session_factory, settings, NOW)
    response = client.post(f"/inbox/{item_id}/reply", data={"reply": "  ", "csrf_token": csrf})
    assert response.status_code == 400
    assert '<a href="#reply">The reply text is empty</a>' in response.text


def test_a_crisis_pause_is_cleared_only_with_a_reason_and_the_clearing_is_audited(
    client: TestClient,
    csrf: str,
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> None:
    item_id = crisis_item(session, session_factory, settings, NOW)
    refused = client.post(f"/inbox/{item_id}/clear-pause", data={"reason": "", "csrf_token": csrf})
    assert refused.status_code == 400 and 'href="#reason"' in refused.text
    assert fetch(session, select(Contact.automation_paused_at)) != [None]
    done = client.post(
        f"/inbox/{item_id}/clear-pause", data={"reason": "Dr Lee spoke to the patient", "csrf_token": csrf}
    )
    assert "no longer paused" in done.text
    assert fetch(session, select(Contact.automation_paused_at)) == [None]
    assert "contact.clear_crisis_pause" in actions(session, subject_type="contact")
    client.post(f"/inbox/{item_id}/handled", data={"csrf_token": csrf})
    assert f'href="/inbox/{item_id}"' not in client.get("/inbox").text


def test_adding_a_contact_with_a_bad_phone_keeps_what_was_typed_and_links_the_error(
    client: TestClient, csrf: str, session: Session
) -> None:
    typed = {"first_name": "Avery", "last_name": "Quinn", "phone": "12", "email": "avery@example.org"}
    response = client.post("/contacts/new", data={**typed, "csrf_token": csrf})
    assert response.status_code == 400
    assert '<a href="#phone">Invalid phone: 2 digits, a US number has 10</a>' in response.text
    assert 'value="Avery"' in response.text and 'value="avery@example.org"' in response.text
    assert fetch(session, select(Contact)) == []
    added = client.post("/contacts/new", data={**typed, "phone": "925 555 0101", "csrf_token": csrf})
    assert "Contact added." in added.text
    assert "contact.add" in actions(session)


def test_search_finds_contacts_by_name_phone_email_and_tag_without_putting_them_in_a_url(
    client: TestClient, csrf: str, session: Session
) -> None:
    add_contact(session, "+15105550101", "Ana")
    add_contact(session, "+15105550102", "Bea", email_address="bea@example.org")
    for query, expected in (("ana", "Ana Test"), ("5550102", "Bea Test"), ("BEA@example", "Bea Test")):
        response = client.post("/contacts", data={"q": query, "csrf_token": csrf})
        assert response.url.path == "/contacts" and not response.url.query
        assert expected in response.text, query
        assert ("Ana Test" in response.text) + ("Bea Test" in response.text) == 1, query
    assert "No contacts match" in client.get("/contacts", params={"tag": "nobody"}).text
    granted = client.get("/contacts", params={"consent_filter": "email:education"}).text
    assert "No contacts match" in granted


def test_a_csv_import_shows_rejected_rows_with_line_and_reason_before_saving_anything(
    client: TestClient, csrf: str, session: Session
) -> None:
    content = f"{HEADER}\nMRN-1,Ana,Ng,+15105550101,ana@example.org,,,,care,\nMRN-2,Bo,Li,not a phone,,,,,,\n"
    preview = client.post(
        "/contacts/import", data={"csrf_token": csrf}, files={"file": ("patients.csv", content, "text/csv")}
    )
    assert preview.status_code == 200
    assert re.search(r"<td>3</td><td>[^<]*phone[^<]*</td>", preview.text), preview.text
    assert "will add 1" in preview.text
    assert fetch(session, select(Contact)) == []
    token = re.search(r'name="token" value="([^"]+)"', preview.text)
    assert token
    done = client.post("/contacts/import/commit", data={"csrf_token": csrf, "token": token.group(1)})
    assert "1 added" in done.text and "1 rejected" in done.text
    assert [c.external_id for c in fetch(session, select(Contact))] == ["MRN-1"]
    again = client.post("/contacts/import/commit", data={"csrf_token": csrf, "token": token.group(1)})
    assert again.status_code == 400 and "expired or was already imported" in again.text
    assert "contacts.import" in actions(session)


def test_a_previewed_file_never_imported_is_deleted_after_an_hour(
    app: FastAPI, client: TestClient, csrf: str, session: Session, clock: Clock
) -> None:
    content = f"{HEADER}\nMRN-1,Ana,Ng,+15105550101,ana@example.org,,,,care,\n"

    def preview(csrf: str) -> Path:
        upload = {"file": ("patients.csv", content, "text/csv")}
        response = client.post("/contacts/import", data={"csrf_token": csrf}, files=upload)
        token = re.search(r'name="token" value="([^"]+)"', response.text)
        assert token
        return Path(app.state.uploads_dir) / f"{token.group(1)}.csv"

    abandoned, left_behind = preview(csrf), preview(csrf)
    clock.now += contact_files.UPLOAD_LIFETIME + timedelta(minutes=1)
    csrf = sign_in(client, STAFF)  # the session itself went idle meanwhile
    late = client.post("/contacts/import/commit", data={"csrf_token": csrf, "token": abandoned.stem})
    assert late.status_code == 400 and "expired" in late.text
    assert not abandoned.exists(), "the patient data is gone"
    assert fetch(session, select(Contact)) == []
    assert left_behind.exists()
    fresh = preview(csrf)  # the next upload sweeps what was left behind
    assert not left_behind.exists() and fresh.exists()


def test_enrolling_from_the_campaign_page_shows_refusals_and_the_schedule_on_the_contact_page(
    client: TestClient, csrf: str, session: Session, settings: Settings
) -> None:
    with session.begin():
        sync.sync(session, settings, NOW)
    willing = add_contact(session, "+15105550101", "Ana", sms=("care", "education"))
    unwilling = add_contact(session, "+15105550102", "Bea", sms=(), email_address=None)
    campaign = client.get("/campaigns").text
    assert "ketamine-education" in campaign
    result = client.post(
        "/campaigns/ketamine-education/enroll",
        data={"contact_ids": f"{willing.id}, {unwilling.id}", "csrf_token": csrf},
    )
    assert "1 enrolled" in result.text and "1 refused" in result.text
    assert f'href="/contacts/{unwilling.id}"' in result.text
    page = client.get(f"/contacts/{willing.id}").text
    schedule = page[page.index("What this patient will receive") : page.index("<h2>Consent")]
    assert "scheduled" in schedule and "Pacific" in schedule
    assert "contact.view" in actions(session, subject_type="contact", subject_id=str(willing.id))


def test_consent_withdrawn_by_phone_is_kept_with_the_patients_words(
    client: TestClient, csrf: str, session: Session
) -> None:
    contact = add_contact(session)
    response = client.post(
        f"/contacts/{contact.id}/consent",
        data={
            "change": "revoke",
            "channel": "sms",
            "category": "education",
            "wording": "Please stop the articles",
            "csrf_token": csrf,
        },
    )
    assert "Consent recorded." in response.text
    event = fetch(session, select(ConsentEvent).order_by(ConsentEvent.id.desc()))[0]
    assert (event.state, event.evidence, event.recorded_by) == (
        "revoked",
        "By phone: Please stop the articles",
        STAFF,
    )
    missing = client.post(f"/contacts/{contact.id}/consent", data={"change": "grant", "csrf_token": csrf})
    assert missing.status_code == 400 and 'href="#wording"' in missing.text


def test_the_day_view_shows_each_visit_with_its_confirmation_state(
    client: TestClient, csrf: str, session: Session, settings: Settings
) -> None:
    book_a_visit(session, settings)
    page = client.get("/appointments", params={"day": "2026-06-12"}).text
    assert "Friday 12 June 2026" in page and "09:30 Pacific" in page and "Ana Test" in page
    # The day view's own phrase: when the request to confirm goes, or why it will not.
    goes = r"request goes \w+ \d+ \w+ \d{4}, \d\d:\d\d Pacific"
    phrase = rf"<td>({goes}|not requested[^<]*confirm by phone)</td>"
    assert re.search(phrase, page)
    week = client.get("/appointments", params={"day": "2026-06-10", "view": "week"}).text
    assert "Monday 8 June 2026" in week and "Ana Test" in week


def test_messages_filter_by_state_and_show_a_message_with_its_attempts(
    client: TestClient, csrf: str, session: Session, settings: Settings
) -> None:
    book_a_visit(session, settings)
    listed = client.get("/messages", params={"state": "scheduled"}).text
    ids = re.findall(r'href="/messages/(\d+)"', listed)
    assert ids
    assert "No messages match" in client.get("/messages", params={"state": "delivered"}).text
    detail = client.get(f"/messages/{ids[0]}").text
    assert "Not tried yet." in detail
    exported = client.get("/messages/export", params={"state": "scheduled"})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["state"] for r in rows} == {"scheduled"} and len(rows) == len(ids)
    assert "messages.export" in actions(session)


def test_an_admin_filters_the_audit_trail_and_exports_it(app: FastAPI, session: Session) -> None:
    contact = add_contact(session)
    with TestClient(app) as staff_client:
        sign_in(staff_client, STAFF)
        staff_client.get(f"/contacts/{contact.id}")
    with TestClient(app) as admin:
        sign_in(admin, "admin@clinic.example.org")
        page = admin.get("/audit", params={"action": "contact.view"}).text
        assert STAFF in page and f"contact {contact.id}" in page
        assert "session.sign_in" not in page
        exported = admin.get("/audit/export", params={"action": "contact.view"})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["actor"], r["subject_id"]) for r in rows] == [(STAFF, str(contact.id))]


def test_settings_mask_secrets_and_give_the_exact_webhook_urls(app: FastAPI, settings: Settings) -> None:
    with TestClient(app) as admin:
        sign_in(admin, "admin@clinic.example.org")
        page = admin.get("/settings").text
    assert f"{settings.public_base_url}/webhooks/twilio/sms" in page
    assert settings.twilio_auth_token.get_secret_value() not in page
    assert settings.secret_key.get_secret_value() not in page
    assert "set (hidden)" in page


@pytest.mark.parametrize(
    ("twilio_answers", "said"), [(True, "Advanced Opt-Out"), (False, "We answer a patient who texts HELP")]
)
def test_settings_give_the_help_reply_to_paste_into_twilio(
    settings: Settings, session_factory: sessionmaker[Session], twilio_answers: bool, said: str
) -> None:
    """Twilio's default answer to HELP names neither the clinic nor 911/988: the page gives the
    clinic's own, to paste into Advanced Opt-Out, or says it is ours when Twilio does not answer."""
    configured = load_settings(
        database_url=settings.database_url,
        templates_dir=settings.templates_dir,
        twilio_handles_opt_out=twilio_answers,
    )
    with TestClient(staff_app(configured, session_factory, Clock())) as admin:
        sign_in(admin, "admin@clinic.example.org")
        page = html.unescape(admin.get("/settings").text)
    assert said in page
    reply = page.split("<blockquote><p>", 1)[1].split("</p></blockquote>", 1)[0]
    assert reply.startswith(f"{configured.clinic_display_name}: call ")
    assert "Reply STOP to opt out" in reply and "911" in reply and "988" in reply


def test_unknown_records_get_a_plain_not_found_page(client: TestClient, csrf: str) -> None:
    for path in ("/contacts/999", "/inbox/999", "/messages/999", "/campaigns/nope"):
        response = client.get(path, headers={"accept": "text/html"})
        assert response.status_code == 404, path
        assert "Not found" in response.text
    mistyped = client.get("/contacts/999/nothing-here", headers={"accept": "text/html"})
    assert mistyped.status_code == 404
    assert "There is no page at this address." in mistyped.text
    assert "Back to the dashboard" in mistyped.text


def test_booking_shows_the_reminders_it_will_send_and_books_only_on_confirm(
    client: TestClient, csrf: str, session: Session
) -> None:
    contact = add_contact(session)
    typed = {
        "contact": str(contact.id),
        "type": "infusion",
        "day": "2026-06-15",
        "time": "09:30",
        "csrf_token": csrf,
    }
    preview = client.post("/appointments/book", data=typed)
    assert preview.status_code == 200
    assert "The patient will be sent" in preview.text and "Mon 15 Jun 2026, 09:30 Pacific" in preview.text
    assert fetch(session, select(Appointment)) == []
    assert fetch(session, select(Message)) == []
    booked = client.post("/appointments/book", data={**typed, "confirm": "yes"})
    assert "Monday 15 June 2026" in booked.text and "Ana Test" in booked.text
    (appointment,) = fetch(session, select(Appointment))
    assert fetch(session, select(Message)) != []
    assert "appointment.book" in actions(session, subject_type="appointment")

    moved = client.post(
        f"/appointments/{appointment.id}/reschedule",
        data={"day": "2026-06-16", "time": "11:00", "csrf_token": csrf},
    )
    assert "already scheduled for this visit will be cancelled" in moved.text
    assert "Tue 16 Jun 2026, 11:00 Pacific" in moved.text
    cancel = client.post(f"/appointments/{appointment.id}/cancel", data={"notify": "yes", "csrf_token": csrf})
    assert "Check before confirming" in cancel.text
    client.post(
        f"/appointments/{appointment.id}/cancel", data={"notify": "yes", "confirm": "yes", "csrf_token": csrf}
    )
    assert [a.status for a in fetch(session, select(Appointment))] == ["cancelled"]


def test_booking_in_the_past_comes_back_with_the_reason(
    client: TestClient, csrf: str, session: Session
) -> None:
    contact = add_contact(session)
    typed = {
        "contact": str(contact.id),
        "type": "infusion",
        "day": "2026-06-01",
        "time": "09:30",
        "csrf_token": csrf,
    }
    response = client.post("/appointments/book", data=typed)
    assert response.status_code == 400 and "The start time is in the past" in response.text
    assert 'value="2026-06-01"' in response.text
    bad_day = client.post("/appointments/book", data={**typed, "day": "15/06/2026"})
    assert bad_day.status_code == 400 and 'href="#day">Enter the date as year-month-day' in bad_day.text


def test_a_badly_typed_date_filter_is_named_at_its_field(client: TestClient, csrf: str) -> None:
    page = client.get("/messages", params={"day_from": "12/06/2026"}).text
    assert '<a href="#day_from">Enter a date as year-month-day' in page
    assert 'id="day_from-error"' in page
