"""/api/v1/contacts: list, create, read, update, delete, CSV import, consent."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from outreach import contacts
from outreach.contacts import ContactInput
from outreach.contacts.documents import contact_documents
from outreach.models import Category, Channel
from outreach.web.api.core import ERROR_RESPONSES, ApiCall, ApiRoute, admin_call, page_limit, staff_call
from outreach.web.api.schemas import Id, Model, Text, decode_cursor, encode_cursor

router = APIRouter(prefix="/contacts", tags=["contacts"], route_class=ApiRoute, responses=ERROR_RESPONSES)

Staff = Annotated[ApiCall, Depends(staff_call)]
Admin = Annotated[ApiCall, Depends(admin_call)]
ConsentFilter = Literal[
    "sms:care", "sms:education", "sms:marketing", "email:care", "email:education", "email:marketing"
]

CONTACT_EXAMPLE: dict[str, Any] = {
    "first_name": "Maria",
    "last_name": "Lopez",
    "phone": "+19255550123",
    "email": "maria@example.org",
    "timezone": "America/Los_Angeles",
    "external_id": "MRN-1234",
    "tags": ["new-patient"],
}


class ContactFields(Model):
    first_name: Annotated[Text | None, Field(max_length=100)] = None
    last_name: Annotated[Text | None, Field(max_length=100)] = None
    phone: Annotated[Text | None, Field(max_length=40, description="Any usual form; stored as E.164.")] = None
    email: Annotated[Text | None, Field(max_length=254)] = None
    timezone: Annotated[
        Text | None, Field(max_length=64, description="IANA zone, e.g. America/Los_Angeles.")
    ] = None
    language: Annotated[Text | None, Field(max_length=16)] = None
    external_id: Annotated[Text | None, Field(max_length=64, description="The EHR's id (an MRN).")] = None
    tags: Annotated[list[Annotated[Text, Field(max_length=64)]] | None, Field(max_length=50)] = None

    def as_input(self) -> ContactInput:
        return ContactInput(**self.model_dump())


class ContactCreate(ContactFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CONTACT_EXAMPLE]})


class ContactUpdate(ContactFields):
    """Fields left out are unchanged; an empty phone or email removes it."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"phone": "+19255550199", "tags": ["returning"]}]}
    )


class Contact(BaseModel):
    id: int
    external_id: str | None
    first_name: str
    last_name: str
    phone: str | None
    email: str | None
    timezone: str
    language: str
    tags: list[str]
    shared_phone: bool
    consent: dict[str, dict[str, str]]
    automation_paused: bool


class ContactPage(BaseModel):
    contacts: list[Contact]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class ConsentChange(Model):
    channel: Channel
    categories: Annotated[list[Category], Field(min_length=1)]
    granted: StrictBool = Field(description="true records consent given, false consent withdrawn.")
    wording: Annotated[
        Text,
        Field(min_length=1, max_length=2000, description="The evidence: what was said or signed, and how."),
    ]
    recorded_by: Annotated[Text | None, Field(max_length=100)] = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel": "sms",
                    "categories": ["care"],
                    "granted": True,
                    "wording": "Signed intake form v3 agreeing to appointment texts",
                }
            ]
        },
    )


class ConsentResult(BaseModel):
    contact_id: int
    channel: str
    categories: list[str]
    granted: bool


class RejectedLine(BaseModel):
    line: int
    reason: str


class ImportReport(BaseModel):
    rows: int
    added: int
    updated: int
    unchanged: int
    rejected: int
    consent_events: int
    ignored_columns: list[str]
    errors: list[RejectedLine]


@router.get("", name="contacts.list", response_model=ContactPage)
def list_contacts(
    call: Staff,
    request: Request,
    tag: Annotated[Text | None, Query(max_length=64)] = None,
    consent: Annotated[
        ConsentFilter | None, Query(description="Only contacts with this consent granted.")
    ] = None,
    q: Annotated[
        Text | None, Query(max_length=100, description="Part of a name, email, phone or external id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[Text | None, Query(max_length=100)] = None,
) -> Response:
    size = page_limit(request, limit)
    consent_to = tuple(consent.split(":")) if consent else None
    found = contact_documents(
        call.session,
        search=q,
        tag=tag,
        consent_to=consent_to,  # type: ignore[arg-type]
        after_id=decode_cursor(cursor),
        limit=size + 1,
    )
    page = found[:size]
    call.about("contact", None, count=len(page))
    # The documents arrive as JSON text (built by PostgreSQL there, outreach.contacts.documents)
    # and go out as they are: parsing and validating 100 of them again would cost the web
    # process more than the rest of the page. ContactPage still describes the response.
    more = json.dumps(encode_cursor(page[-1][0])) if len(found) > size else "null"
    body = '{"contacts":[' + ",".join(document for _, document in page) + '],"next_cursor":' + more + "}"
    return Response(body, media_type="application/json")


@router.post("", name="contacts.create", status_code=201, response_model=Contact)
def create_contact(call: Staff, body: ContactCreate) -> dict[str, Any]:
    contact = contacts.add_contact(
        call.session, body.as_input(), clinic_timezone=call.settings.clinic_timezone, now=call.now
    )
    call.about("contact", contact.id)
    return contacts.contact_json(call.session, contact)


@router.get("/{contact_id}", name="contacts.read", response_model=Contact)
def read_contact(call: Staff, contact_id: Id) -> dict[str, Any]:
    call.about("contact", contact_id)
    return contacts.contact_json(call.session, contacts.get_contact(call.session, contact_id))


@router.patch("/{contact_id}", name="contacts.update", response_model=Contact)
def update_contact(call: Staff, contact_id: Id, body: ContactUpdate) -> dict[str, Any]:
    call.about("contact", contact_id, fields=sorted(body.model_fields_set))
    contact = contacts.update_contact(
        call.session, contacts.get_contact(call.session, contact_id), body.as_input(), now=call.now
    )
    return contacts.contact_json(call.session, contact)


@router.delete("/{contact_id}", name="contacts.delete", status_code=204, response_class=Response)
def delete_contact(call: Admin, contact_id: Id) -> Response:
    call.about("contact", contact_id)
    contacts.delete_contact(call.session, contacts.get_contact(call.session, contact_id))
    return Response(status_code=204)


@router.post("/{contact_id}/consent", name="contacts.consent", response_model=ConsentResult)
def change_consent(call: Staff, contact_id: Id, body: ConsentChange) -> dict[str, Any]:
    assert call.caller is not None
    call.about("contact", contact_id, channel=str(body.channel), granted=body.granted)
    recorded = contacts.change_consent(
        call.session,
        contact_id,
        str(body.channel),
        [str(c) for c in body.categories],
        grant=body.granted,
        wording=body.wording,
        recorded_by=body.recorded_by or f"api token {call.caller.name}",
        now=call.now,
    )
    return {
        "contact_id": contact_id,
        "channel": str(body.channel),
        "categories": recorded,
        "granted": body.granted,
    }


CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "first_name,last_name,phone,email,external_id,sms_care\n"
                "Maria,Lopez,+19255550123,maria@example.org,MRN-1234,yes\n",
            }
        },
    }
}


@router.post("/import", name="contacts.import", response_model=ImportReport, openapi_extra=CSV_BODY)
async def import_contacts(request: Request, call: Admin) -> dict[str, Any]:
    """The contacts CSV format of `outreach contacts import`; the report names each rejected line."""
    body = await request.body()
    assert call.caller is not None
    recorded_by = f"api token {call.caller.name}"

    def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "contacts.csv"
            path.write_bytes(body)
            report = contacts.import_contacts_csv(
                call.session,
                path,
                clinic_timezone=call.settings.clinic_timezone,
                recorded_by=recorded_by,
                workers=1,
                now=call.now,
            )
        call.about("contacts", None, rows=report.rows, added=report.added, rejected=report.rejected)
        document = report.as_dict()
        document.pop("file", None)
        return document

    return await run_in_threadpool(run)
