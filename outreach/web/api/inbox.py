"""/api/v1/inbox: patient replies for staff: list, read, reply, assign, handle.

Responses are the service's own dataclasses (FastAPI describes and serialises them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from outreach.replies import inbox
from outreach.web.api.core import ERROR_RESPONSES, ApiCall, ApiRoute, page_limit, staff_call
from outreach.web.api.schemas import Id, Model, Text

router = APIRouter(prefix="/inbox", tags=["inbox"], route_class=ApiRoute, responses=ERROR_RESPONSES)

Staff = Annotated[ApiCall, Depends(staff_call)]


class ItemList(BaseModel):
    items: list[inbox.ItemSummary]


class ReplyRequest(Model):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Thanks, we will call you this afternoon."}]},
    )

    text: Annotated[Text, Field(min_length=1, max_length=inbox.MAX_REPLY_LENGTH)]
    contact_id: Id | None = Field(None, description="Which candidate, when the sender's phone is shared.")


class Queued(BaseModel):
    message_id: int
    goes_out_any_hour: bool = Field(
        description="false: held for the sending window (the patient wrote long ago)."
    )


class AssignRequest(Model):
    name: Annotated[Text, Field(min_length=1, max_length=100)]


def _who(call: ApiCall) -> str:
    assert call.caller is not None
    return f"api token {call.caller.name}"


@router.get("", name="inbox.list", response_model=ItemList)
def list_items(
    call: Staff,
    request: Request,
    state: Annotated[Literal["open", "unread", "read", "handled", "all"], Query()] = "open",
    urgent: Annotated[bool, Query(description="Only urgent (crisis) items.")] = False,
    contact_id: Annotated[Id | None, Query()] = None,
    assigned_to: Annotated[Text | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> dict[str, Any]:
    """Urgent first, then newest first."""
    items = inbox.list_items(
        call.session,
        state=state,
        urgent_only=urgent,
        contact_id=contact_id,
        assigned_to=assigned_to,
        limit=page_limit(request, limit),
    )
    call.about("inbox_item", None, count=len(items))
    return {"items": [i.as_dict() for i in items]}


@router.get("/{item_id}", name="inbox.read", response_model=inbox.ItemDetail)
def read_item(call: Staff, item_id: Id) -> dict[str, Any]:
    """The item with the whole conversation; reading an unread item marks it read."""
    call.about("inbox_item", item_id)
    return inbox.show_item(call.session, item_id).as_dict()


@router.post("/{item_id}/reply", name="inbox.reply", response_model=Queued)
def reply(call: Staff, item_id: Id, body: ReplyRequest) -> dict[str, Any]:
    """Queue an SMS to the patient; refused (422) for an opted-out number."""
    queued = inbox.reply(
        call.session, call.settings, item_id, body.text, _who(call), call.now, contact_id=body.contact_id
    )
    call.about("inbox_item", item_id, message_id=queued.message_id)
    return {"message_id": queued.message_id, "goes_out_any_hour": queued.goes_out_any_hour}


@router.post("/{item_id}/assign", name="inbox.assign", response_model=inbox.ItemSummary)
def assign(call: Staff, item_id: Id, body: AssignRequest) -> dict[str, Any]:
    call.about("inbox_item", item_id)
    return inbox.assign(call.session, item_id, body.name).as_dict()


@router.post("/{item_id}/handle", name="inbox.handle", response_model=inbox.ItemSummary)
def handle(call: Staff, item_id: Id) -> dict[str, Any]:
    call.about("inbox_item", item_id)
    return inbox.mark_handled(call.session, item_id, _who(call), call.now).as_dict()
