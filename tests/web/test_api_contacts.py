"""/api/v1/contacts through HTTP on both databases: CRUD, filters, paging, import, consent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings
from outreach.models import AuditEvent, ConsentEvent, Contact
from tests.support.api import Api, api_client

ANA = {"first_name": "Ana", "last_name": "Test", "phone": "(510) 555-0101", "external_id": "MRN-1"}


@pytest.fixture
def api(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[Api]:
    with api_client(settings, session_factory) as api:
        yield api


def test_a_created_contact_reads_back_with_its_phone_in_e164_and_no_consent(api: Api) -> None:
    created = api.client.post("/api/v1/contacts", json=ANA, headers=api.staff)
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]
    read = api.client.get(f"/api/v1/contacts/{contact_id}", headers=api.staff).json()
    assert read["phone"] == "+15105550101"
    assert read["timezone"] == "America/Los_Angeles"
    assert read["consent"]["sms"]["care"] == "none"


def test_bad_fields_get_a_422_naming_each_field_and_nothing_is_stored(api: Api, session: Session) -> None:
    response = api.client.post(
        "/api/v1/contacts",
        json={"phone": "12", "email": "not-an-email", "timezone": "Mars/Base"},
        headers=api.staff,
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    for field in ("phone", "email", "time zone"):
        assert field in detail
    assert session.scalar(select(func.count()).select_from(Contact)) == 0


def test_a_control_character_in_a_field_is_refused_naming_the_field(api: Api) -> None:
    response = api.client.post("/api/v1/contacts", json={**ANA, "last_name": "Te\x00st"}, headers=api.staff)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.last_name"]


def test_an_unknown_field_is_refused_rather_than_dropped(api: Api) -> None:
    response = api.client.post("/api/v1/contacts", json={**ANA, "phone_number": "x"}, headers=api.staff)
    assert response.status_code == 422
    assert "body.phone_number" in [e["field"] for e in response.json()["errors"]]


def test_a_second_contact_with_the_same_external_id_is_a_409(api: Api) -> None:
    assert api.client.post("/api/v1/contacts", json=ANA, headers=api.staff).status_code == 201
    again = api.client.post("/api/v1/contacts", json={**ANA, "phone": "+15105550102"}, headers=api.staff)
    assert again.status_code == 409
    assert "MRN-1" not in again.text


def test_update_changes_only_the_fields_given(api: Api) -> None:
    contact_id = api.client.post("/api/v1/contacts", json=ANA, headers=api.staff).json()["id"]
    response = api.client.patch(f"/api/v1/contacts/{contact_id}", json={"tags": ["VIP"]}, headers=api.staff)
    assert response.status_code == 200
    assert response.json()["tags"] == ["vip"]
    assert response.json()["first_name"] == "Ana"


def test_unknown_ids_are_404(api: Api) -> None:
    assert api.client.get("/api/v1/contacts/999", headers=api.staff).status_code == 404
    assert api.client.patch("/api/v1/contacts/999", json={}, headers=api.staff).status_code == 404
    assert api.client.get("/api/v1/contacts/99999999999", headers=api.staff).status_code == 422


def test_delete_needs_an_admin_token_and_keeps_contacts_with_history(api: Api) -> None:
    plain = api.client.post("/api/v1/contacts", json=ANA, headers=api.staff).json()["id"]
    assert api.client.delete(f"/api/v1/contacts/{plain}", headers=api.staff).status_code == 403
    assert api.client.delete(f"/api/v1/contacts/{plain}", headers=api.admin).status_code == 204
    assert api.client.get(f"/api/v1/contacts/{plain}", headers=api.staff).status_code == 404

    kept = api.client.post("/api/v1/contacts", json=ANA, headers=api.staff).json()["id"]
    consent = {"channel": "sms", "categories": ["care"], "granted": True, "wording": "verbal, front desk"}
    assert (
        api.client.post(f"/api/v1/contacts/{kept}/consent", json=consent, headers=api.staff).status_code
        == 200
    )
    refused = api.client.delete(f"/api/v1/contacts/{kept}", headers=api.admin)
    assert refused.status_code == 409
    assert api.client.get(f"/api/v1/contacts/{kept}", headers=api.staff).status_code == 200


def test_consent_given_then_withdrawn_is_kept_with_its_evidence(api: Api, session: Session) -> None:
    contact_id = api.client.post("/api/v1/contacts", json=ANA, headers=api.staff).json()["id"]
    given = {
        "channel": "sms",
        "categories": ["care", "education"],
        "granted": True,
        "wording": "intake form v3",
    }
    withdrawn = {"channel": "sms", "categories": ["education"], "granted": False, "wording": "asked by phone"}
    assert (
        api.client.post(f"/api/v1/contacts/{contact_id}/consent", json=given, headers=api.staff).status_code
        == 200
    )
    assert (
        api.client.post(
            f"/api/v1/contacts/{contact_id}/consent", json=withdrawn, headers=api.staff
        ).status_code
        == 200
    )
    view = api.client.get(f"/api/v1/contacts/{contact_id}", headers=api.staff).json()["consent"]["sms"]
    assert view == {"care": "granted", "education": "revoked", "marketing": "none"}
    ledger = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
    assert [(e.category, e.state, e.evidence, e.recorded_by) for e in ledger] == [
        ("care", "granted", "intake form v3", "api token booking-sync"),
        ("education", "granted", "intake form v3", "api token booking-sync"),
        ("education", "revoked", "asked by phone", "api token booking-sync"),
    ]


def test_consent_without_evidence_is_refused(api: Api) -> None:
    contact_id = api.client.post("/api/v1/contacts", json=ANA, headers=api.staff).json()["id"]
    body = {"channel": "sms", "categories": ["care"], "granted": True, "wording": ""}
    response = api.client.post(f"/api/v1/contacts/{contact_id}/consent", json=body, headers=api.staff)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.wording"


def test_paging_walks_a_thousand_contacts_to_the_end_without_gaps(api: Api, session: Session) -> None:
    session.add_all(
        Contact(first_name=f"P{n}", phone=f"+1415555{n:04d}", timezone="America/Los_Angeles")
        for n in range(1000)
    )
    session.commit()
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 300}
        if cursor:
            params["cursor"] = cursor
        page = api.client.get("/api/v1/contacts", params=params, headers=api.staff).json()
        seen += [c["id"] for c in page["contacts"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert seen == sorted(seen) and len(set(seen)) == 1000


def test_list_filters_by_tag_consent_and_search(api: Api) -> None:
    ana = api.client.post("/api/v1/contacts", json={**ANA, "tags": ["new"]}, headers=api.staff).json()["id"]
    api.client.post(
        "/api/v1/contacts", json={"first_name": "Bo", "email": "bo@example.org"}, headers=api.staff
    )
    consent = {"channel": "sms", "categories": ["care"], "granted": True, "wording": "intake form"}
    api.client.post(f"/api/v1/contacts/{ana}/consent", json=consent, headers=api.staff)

    def ids(**params: str) -> list[int]:
        return [
            c["id"]
            for c in api.client.get("/api/v1/contacts", params=params, headers=api.staff).json()["contacts"]
        ]

    assert ids(tag="new") == [ana]
    assert ids(consent="sms:care") == [ana]
    assert ids(consent="email:care") == []
    assert len(ids(q="example.org")) == 1
    assert (
        api.client.get("/api/v1/contacts", params={"cursor": "nonsense"}, headers=api.staff).status_code
        == 422
    )


def test_import_reports_each_bad_line_and_keeps_the_good_rows(api: Api, session: Session) -> None:
    csv = (
        "first_name,last_name,phone,email\n"
        "Ana,Test,+15105550101,ana@example.org\n"
        "Bo,Test,12,\n"
        "Cy,Test,+15105550103,\n"
    )
    headers = {**api.admin, "Content-Type": "text/csv"}
    response = api.client.post("/api/v1/contacts/import", content=csv, headers=headers)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["added"], report["rejected"]) == (2, 1)
    assert report["errors"][0]["line"] == 3
    assert "phone" in report["errors"][0]["reason"]
    assert session.scalar(select(func.count()).select_from(Contact)) == 2
    session.rollback()  # end the read: SQLite would make the next call wait for this session's lock
    staff_headers = {**api.staff, "Content-Type": "text/csv"}
    assert api.client.post("/api/v1/contacts/import", content=csv, headers=staff_headers).status_code == 403


def test_a_body_over_the_cap_is_refused_with_413(api: Api) -> None:
    response = api.client.post(
        "/api/v1/contacts",
        content=b"{" + b" " * 1_000_001 + b"}",
        headers={**api.staff, "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_each_call_is_in_the_audit_trail_with_the_token_and_the_contact(api: Api, session: Session) -> None:
    contact_id = api.client.post("/api/v1/contacts", json=ANA, headers=api.staff).json()["id"]
    api.client.get(f"/api/v1/contacts/{contact_id}", headers=api.staff)
    api.client.get("/api/v1/contacts/424242", headers=api.staff)
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(e.actor_kind, e.actor, e.action, e.subject_id, e.detail["status"]) for e in events] == [
        ("token", "booking-sync", "api.contacts.create", str(contact_id), 201),
        ("token", "booking-sync", "api.contacts.read", str(contact_id), 200),
        ("token", "booking-sync", "api.contacts.read", "424242", 404),
    ]
    assert all("555" not in str(e.detail) for e in events)


def test_a_body_sent_without_a_length_is_cut_off_at_the_cap(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"first_name": "'
        for _ in range(200):
            yield b"x" * 10_000
        yield b'"}'

    headers = {**api.staff, "Content-Type": "application/json"}
    assert api.client.post("/api/v1/contacts", content=chunks(), headers=headers).status_code == 413


def test_a_body_that_is_not_json_gets_a_400_that_says_so(api: Api) -> None:
    headers = {**api.staff, "Content-Type": "application/json"}
    response = api.client.post("/api/v1/contacts", content=b"\xff\xfe\xfd", headers=headers)
    assert response.status_code == 400
    assert response.json()["detail"] == "the request body is not valid JSON"
