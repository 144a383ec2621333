"""PUT /api/v1/appointments/{external_id} and the FHIR R4 intake, through HTTP on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings
from outreach.models import Appointment, Message, MessageState
from tests.support.api import Api, api_client
from tests.support.replies import add_contact

VISIT = {"contact_external_id": "MRN-1", "starts_at": "2026-06-15T10:00:00-07:00", "type": "infusion"}


@pytest.fixture
def api(settings: Settings, session_factory: sessionmaker[Session], session: Session) -> Iterator[Api]:
    contact = add_contact(session)
    contact.external_id = "MRN-1"
    other = add_contact(session, phone="+15105550102", first_name="Bo")
    other.external_id = "MRN-2"
    session.commit()
    with api_client(settings, session_factory) as api:
        yield api


def _pending(session: Session) -> list[tuple[str, str]]:
    session.expire_all()
    rows = session.execute(
        select(Message.idempotency_key, Message.state)
        .where(Message.appointment_id.is_not(None))
        .order_by(Message.id)
    ).all()
    session.rollback()
    return [(key, state) for key, state in rows]


def _count(session: Session, model: type[Any]) -> int:
    count = session.scalar(select(func.count()).select_from(model)) or 0
    session.rollback()
    return count


def test_the_same_body_twice_makes_one_appointment_and_one_set_of_reminders(
    api: Api, session: Session
) -> None:
    first = api.client.put("/api/v1/appointments/CSN-1", json=VISIT, headers=api.staff)
    assert first.status_code == 201, first.text
    assert first.json()["action"] == "booked"
    reminders = _pending(session)
    assert reminders and all(state == MessageState.SCHEDULED for _, state in reminders)

    second = api.client.put("/api/v1/appointments/CSN-1", json=VISIT, headers=api.staff)
    assert second.status_code == 200
    assert second.json()["action"] == "unchanged"
    assert second.json()["message_ids"] == []
    assert _count(session, Appointment) == 1
    assert _pending(session) == reminders


def test_a_changed_time_reschedules_and_replaces_the_reminders(api: Api, session: Session) -> None:
    api.client.put("/api/v1/appointments/CSN-1", json=VISIT, headers=api.staff)
    moved = api.client.put(
        "/api/v1/appointments/CSN-1",
        json={**VISIT, "starts_at": "2026-06-16T14:00:00-07:00"},
        headers=api.staff,
    )
    assert moved.status_code == 200
    body = moved.json()
    assert body["action"] == "rescheduled"
    assert body["appointment"]["version"] == 2
    assert body["appointment"]["local_starts_at"] == "2026-06-16T14:00:00-07:00"
    states = dict(_pending(session))
    assert any(":v1" in key and state == MessageState.CANCELLED for key, state in states.items())
    assert any(":v2" in key and state == MessageState.SCHEDULED for key, state in states.items())


def test_status_cancelled_cancels_the_visit_and_its_pending_reminders(api: Api, session: Session) -> None:
    api.client.put("/api/v1/appointments/CSN-1", json=VISIT, headers=api.staff)
    cancelled = api.client.put(
        "/api/v1/appointments/CSN-1", json={**VISIT, "status": "cancelled"}, headers=api.staff
    )
    assert cancelled.json()["action"] == "cancelled"
    assert all(state != MessageState.SCHEDULED for _, state in _pending(session))
    again = api.client.put(
        "/api/v1/appointments/CSN-1", json={**VISIT, "status": "cancelled"}, headers=api.staff
    )
    assert again.json()["action"] == "unchanged"


def test_an_external_id_of_another_patients_visit_is_a_409(api: Api, session: Session) -> None:
    api.client.put("/api/v1/appointments/CSN-1", json=VISIT, headers=api.staff)
    response = api.client.put(
        "/api/v1/appointments/CSN-1", json={**VISIT, "contact_external_id": "MRN-2"}, headers=api.staff
    )
    assert response.status_code == 409
    assert _count(session, Appointment) == 1


def test_bad_visits_get_a_422_naming_the_field(api: Api, session: Session) -> None:
    def errors(body: dict[str, Any]) -> tuple[int, list[str], str]:
        response = api.client.put("/api/v1/appointments/CSN-9", json=body, headers=api.staff)
        document = response.json()
        return response.status_code, [e["field"] for e in document["errors"]], document["detail"]

    assert errors({**VISIT, "contact_external_id": "MRN-404"}) == (
        422,
        ["body.contact_external_id"],
        "invalid input",
    )
    assert errors({**VISIT, "starts_at": "2026-06-15T10:00:00"})[1] == ["body.starts_at"]
    status, _, detail = errors({**VISIT, "type": "massage"})
    assert status == 422 and "unknown appointment type" in detail
    status, _, detail = errors({**VISIT, "starts_at": "2026-06-01T10:00:00-07:00"})
    assert status == 422 and "past" in detail
    assert _count(session, Appointment) == 0


def test_appointments_list_by_date_range_in_start_order_with_paging(api: Api) -> None:
    for n, day in enumerate((17, 15, 16, 20)):
        body = {**VISIT, "starts_at": f"2026-06-{day}T10:00:00-07:00"}
        api.client.put(f"/api/v1/appointments/CSN-{n}", json=body, headers=api.staff)
    params: dict[str, str | int] = {
        "from": "2026-06-15T00:00:00-07:00", "to": "2026-06-18T00:00:00-07:00", "limit": 2
    }
    first = api.client.get("/api/v1/appointments", params=params, headers=api.staff).json()
    second = api.client.get(
        "/api/v1/appointments", params={**params, "cursor": first["next_cursor"]}, headers=api.staff
    ).json()
    days = [a["local_starts_at"][:10] for a in first["appointments"] + second["appointments"]]
    assert days == ["2026-06-15", "2026-06-16", "2026-06-17"]
    assert second["next_cursor"] is None


def fhir_appointment(
    identifier: str = "CSN-884211",
    start: str | None = "2026-06-15T10:00:00-07:00",
    status: str = "booked",
    patient: str = "MRN-1",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.3.698084.8", "value": identifier}],
        "status": status,
        "appointmentType": {"coding": [{"system": "urn:clinic:visit-types", "code": "INFUSION"}]},
        "participant": [
            {"actor": {"reference": "Practitioner/77", "display": "Dr. Example"}, "status": "accepted"},
            {
                "actor": {"reference": "Patient/e63wRTbPfr1", "identifier": {"value": patient}},
                "status": "accepted",
            },
        ],
    }
    if start is not None:
        resource["start"] = start
        resource["end"] = start.replace("T10:", "T11:")
    return resource


def _fhir(api: Api, document: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    headers = {**api.staff, "Content-Type": "application/fhir+json"}
    response = api.client.post("/api/v1/fhir/Appointment", json=document, headers=headers)
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return response.status_code, body["issue"]


def test_fhir_booked_then_rescheduled_then_cancelled(api: Api, session: Session) -> None:
    status, issues = _fhir(api, fhir_appointment())
    assert status == 200 and issues[0]["diagnostics"].endswith("booked")
    appointment = session.scalars(select(Appointment)).one()
    assert (appointment.external_id, appointment.type, appointment.duration_minutes) == (
        "CSN-884211",
        "infusion",
        60,
    )
    session.rollback()
    assert _fhir(api, fhir_appointment())[1][0]["diagnostics"].endswith("unchanged")
    assert _fhir(api, fhir_appointment(start="2026-06-16T10:00:00-07:00"))[1][0]["diagnostics"].endswith(
        "rescheduled"
    )
    assert _fhir(api, fhir_appointment(status="cancelled"))[1][0]["diagnostics"].endswith("cancelled")
    assert _count(session, Appointment) == 1


def test_a_fhir_bundle_takes_the_usable_entries_and_reports_the_others(api: Api, session: Session) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": fhir_appointment("CSN-1")},
            {"resource": fhir_appointment("CSN-2", patient="MRN-404")},
            {"resource": fhir_appointment("CSN-3", start=None)},
            {"resource": fhir_appointment("CSN-4", patient="MRN-2")},
        ],
    }
    status, issues = _fhir(api, bundle)
    assert status == 200
    assert [(i["severity"], i["expression"]) for i in issues] == [
        ("information", ["Bundle.entry[0].resource"]),
        ("error", ["Bundle.entry[1].resource.participant"]),
        ("error", ["Bundle.entry[2].resource.start"]),
        ("information", ["Bundle.entry[3].resource"]),
    ]
    assert "MRN-404" not in str(issues)
    assert sorted(str(e) for e in session.scalars(select(Appointment.external_id))) == ["CSN-1", "CSN-4"]


def test_invalid_fhir_and_unusable_appointments_get_a_422_operation_outcome(
    api: Api, session: Session
) -> None:
    status, issues = _fhir(api, {"resourceType": "Appointment", "status": "booked"})
    assert status == 422 and issues[0]["expression"] == ["Appointment.participant"]
    status, issues = _fhir(api, {"resourceType": "Patient"})
    assert status == 422 and issues[0]["code"] == "not-supported"
    status, issues = _fhir(api, fhir_appointment(patient="MRN-404"))
    assert status == 422 and issues[0]["code"] == "not-found"
    status, issues = _fhir(api, fhir_appointment(status="proposed"))
    assert status == 422 and issues[0]["expression"] == ["Appointment.status"]
    assert _count(session, Appointment) == 0
