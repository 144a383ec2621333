"""POST /api/v1/fhir/Appointment: FHIR R4 Appointment intake (one resource or a Bundle).

Each appointment is upserted by its identifier, in its own savepoint: in a Bundle the usable
entries go in and the others are reported, entry by entry, in an OperationOutcome. A document
with no usable appointment gets a 422 OperationOutcome. Errors on this route (a bad token too)
are OperationOutcomes, as FHIR clients expect.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from outreach.appointments import fhir
from outreach.appointments.policy import load_policies
from outreach.appointments.upsert import AppointmentData, upsert
from outreach.contacts import get_contact
from outreach.errors import NotFound, OutreachError
from outreach.web.api.core import ERROR_RESPONSES, ApiCall, ApiRoute, ErrorItem, staff_call

FHIR_JSON = "application/fhir+json"


class Issue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str
    diagnostics: str
    expression: list[str] = []


class OperationOutcome(BaseModel):
    resourceType: Literal["OperationOutcome"] = "OperationOutcome"
    issue: list[Issue]


class FhirJSONResponse(JSONResponse):
    media_type = FHIR_JSON


def _outcome(status: int, issues: list[Issue], headers: dict[str, str] | None = None) -> JSONResponse:
    body = OperationOutcome(issue=issues).model_dump()
    return FhirJSONResponse(body, status_code=status, headers=headers)


class FhirRoute(ApiRoute):
    def error_response(
        self,
        status: int,
        detail: str,
        errors: list[ErrorItem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        issues = [
            Issue(severity="error", code="invalid", diagnostics=e.message, expression=[e.field])
            for e in errors or []
        ]
        return _outcome(
            status, issues or [Issue(severity="error", code="processing", diagnostics=detail)], headers
        )


OUTCOME_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": OperationOutcome, "description": spec["description"]}
    for status, spec in ERROR_RESPONSES.items()
}
router = APIRouter(prefix="/fhir", tags=["fhir"], route_class=FhirRoute, responses=OUTCOME_RESPONSES)
Staff = Annotated[ApiCall, Depends(staff_call)]

EXAMPLE = {
    "resourceType": "Appointment",
    "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.3.698084.8", "value": "CSN-884211"}],
    "status": "booked",
    "appointmentType": {"coding": [{"code": "infusion"}], "text": "Infusion"},
    "start": "2026-06-12T10:00:00-07:00",
    "end": "2026-06-12T11:00:00-07:00",
    "participant": [
        {
            "actor": {"reference": "Patient/e63wRTbPfr1p8UW81d8Seiw3", "identifier": {"value": "MRN-1234"}},
            "status": "accepted",
        }
    ],
}


def _issues(problems: list[fhir.Problem]) -> list[Issue]:
    return [
        Issue(severity="error", code=p.code, diagnostics=p.message, expression=[p.expression])
        for p in problems
    ]


def _take(call: ApiCall, where: str, resource: Any, known: list[str]) -> Issue:
    found = fhir.visit(where, resource, known)
    try:
        contact = get_contact(call.session, f"ext:{found.patient_external_id}")
    except NotFound:
        raise fhir.Unusable(
            [fhir.Problem(f"{where}.participant", "no contact has that patient identifier", "not-found")]
        ) from None
    with call.session.begin_nested():
        change = upsert(
            call.session,
            call.settings,
            AppointmentData(
                contact_id=contact.id,
                starts_at=found.starts_at,
                type=found.type,
                external_id=found.external_id,
                duration_minutes=found.duration_minutes,
                status=found.status,
            ),
            now=call.now,
        )
    return Issue(
        severity="information",
        code="informational",
        diagnostics=f"appointment {change.appointment.id}: {change.action}",
        expression=[where],
    )


@router.post(
    "/Appointment",
    name="fhir.appointment",
    response_model=OperationOutcome,
    response_class=FhirJSONResponse,
    responses={422: {"model": OperationOutcome, "description": "Not valid FHIR, or no usable appointment"}},
)
def appointment_intake(
    call: Staff, document: Annotated[dict[str, Any], Body(openapi_examples={"booked": {"value": EXAMPLE}})]
) -> JSONResponse:
    """An R4 Appointment or a Bundle of them. Each is an idempotent upsert keyed by its identifier."""
    try:
        items = fhir.parse(document)
    except fhir.Unusable as exc:
        call.about("appointment", None, usable=0)
        return _outcome(422, _issues(exc.problems))
    known = sorted(load_policies(call.settings.templates_dir))
    issues: list[Issue] = []
    usable = 0
    for where, item in items:
        try:
            if isinstance(item, fhir.Unusable):
                raise item
            issues.append(_take(call, where, item, known))
            usable += 1
        except fhir.Unusable as exc:
            issues.extend(_issues(exc.problems))
        except OutreachError as exc:
            issues.append(
                Issue(severity="error", code="business-rule", diagnostics=str(exc), expression=[where])
            )
    call.about("appointment", None, usable=usable, refused=len(items) - usable)
    return _outcome(200 if usable else 422, issues)
