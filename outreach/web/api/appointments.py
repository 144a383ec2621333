"""/api/v1/appointments: list by date range, and the booking system's idempotent upsert."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from outreach import appointments
from outreach.appointments.dayview import between
from outreach.appointments.upsert import AppointmentData
from outreach.contacts import contact_id_of
from outreach.errors import NotFound
from outreach.web.api.core import (
    ERROR_RESPONSES,
    ApiCall,
    ApiError,
    ApiRoute,
    ErrorItem,
    page_limit,
    staff_call,
)
from outreach.web.api.schemas import Id, Instant, Model, Text, decode_cursor, encode_cursor

router = APIRouter(
    prefix="/appointments", tags=["appointments"], route_class=ApiRoute, responses=ERROR_RESPONSES
)

Staff = Annotated[ApiCall, Depends(staff_call)]
ExternalId = Annotated[
    Text, Path(min_length=1, max_length=64, description="The booking system's id for the visit.")
]
PushedStatus = Literal["booked", "confirmed", "cancelled", "completed", "no_show"]


class AppointmentPut(Model):
    """One visit as the booking system sees it. Send it whenever it changes (or more often):
    the same body again changes nothing and sends nothing."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "contact_external_id": "MRN-1234",
                    "starts_at": "2026-06-12T10:00:00-07:00",
                    "type": "infusion",
                    "duration_minutes": 60,
                    "location": "Suite 200",
                    "status": "booked",
                }
            ]
        },
    )

    contact_id: Id | None = Field(None, description="Our contact id; or give contact_external_id.")
    contact_external_id: Annotated[Text | None, Field(min_length=1, max_length=64)] = None
    starts_at: Instant
    type: Annotated[
        Text, Field(min_length=1, max_length=32, description="An appointment type with a reminder policy.")
    ]
    duration_minutes: Annotated[int | None, Field(ge=5, le=1440)] = None
    location: Annotated[Text | None, Field(max_length=200)] = None
    timezone: Annotated[Text | None, Field(max_length=64)] = None
    status: PushedStatus | None = None

    @model_validator(mode="after")
    def one_patient(self) -> AppointmentPut:
        if (self.contact_id is None) == (self.contact_external_id is None):
            raise ValueError("give exactly one of contact_id and contact_external_id")
        return self


class Appointment(BaseModel):
    id: int
    contact_id: int
    external_id: str | None
    type: str
    starts_at: str = Field(description="UTC, ISO-8601.")
    local_starts_at: str = Field(description="In the visit's zone, ISO-8601 with offset.")
    timezone: str
    duration_minutes: int
    location: str
    status: str
    version: int
    confirmed_at: str | None
    reschedule_requested_at: str | None


class AppointmentChange(BaseModel):
    action: str = Field(description="booked, rescheduled, updated, cancelled, confirmed, unchanged, ...")
    appointment: Appointment
    message_ids: list[int] = Field(description="Reminders this change scheduled.")
    skipped: list[dict[str, str]]
    cancelled_messages: int


class AppointmentPage(BaseModel):
    appointments: list[Appointment]
    next_cursor: str | None


@router.get("", name="appointments.list", response_model=AppointmentPage)
def list_appointments(
    call: Staff,
    request: Request,
    start: Annotated[Instant, Query(alias="from", description="Visits starting at or after this instant.")],
    end: Annotated[Instant, Query(alias="to", description="... and before this one.")],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[Text | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    size = page_limit(request, limit)
    found = between(call.session, start, end, after_id=decode_cursor(cursor), limit=size + 1)
    page = found[:size]
    call.about("appointment", None, count=len(page))
    return {
        "appointments": [appointments.describe(a) for a in page],
        "next_cursor": encode_cursor(page[-1].id) if len(found) > size else None,
    }


def _contact_id(call: ApiCall, body: AppointmentPut) -> int:
    ref: int | str = body.contact_id if body.contact_id is not None else f"ext:{body.contact_external_id}"
    field = "contact_id" if body.contact_id is not None else "contact_external_id"
    try:
        return contact_id_of(call.session, ref)
    except NotFound:
        raise ApiError(
            422, "invalid input", errors=[ErrorItem(field=f"body.{field}", message="no such contact")]
        ) from None


def put_appointment(call: ApiCall, external_id: str, body: AppointmentPut) -> appointments.Change:
    """The upsert behind PUT and the FHIR intake."""
    change = appointments.upsert(
        call.session,
        call.settings,
        AppointmentData(
            contact_id=_contact_id(call, body),
            starts_at=body.starts_at,
            type=body.type,
            external_id=external_id,
            duration_minutes=body.duration_minutes,
            location=body.location,
            timezone=body.timezone,
            status=body.status,
        ),
        now=call.now,
    )
    return change


@router.put(
    "/{external_id}",
    name="appointments.upsert",
    response_model=AppointmentChange,
    responses={201: {"model": AppointmentChange, "description": "Booked: the visit was new"}},
)
def upsert_appointment(
    call: Staff, external_id: ExternalId, body: AppointmentPut, response: Response
) -> dict[str, Any]:
    change = put_appointment(call, external_id, body)
    call.about("appointment", change.appointment.id, action=change.action, messages=len(change.message_ids))
    if change.action == "booked":
        response.status_code = 201
    return change.as_dict()
