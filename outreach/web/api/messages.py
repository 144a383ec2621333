"""/api/v1/messages: the outbox and its delivery log, as the CLI shows them (never bodies)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from outreach.delivery.views import list_messages, message_detail
from outreach.models import Channel, MessageState
from outreach.web.api.core import ERROR_RESPONSES, ApiCall, ApiRoute, page_limit, staff_call
from outreach.web.api.schemas import Id, Instant, Text, decode_cursor, encode_cursor

router = APIRouter(prefix="/messages", tags=["messages"], route_class=ApiRoute, responses=ERROR_RESPONSES)

Staff = Annotated[ApiCall, Depends(staff_call)]


class MessageSummary(BaseModel):
    id: int
    contact_id: int | None
    channel: str
    category: str
    kind: str
    template: str | None
    due_at: str = Field(description="UTC, ISO-8601.")
    local_due_at: str | None = Field(description="In the recipient's zone, ISO-8601 with offset.")
    state: str
    state_reason: str | None
    attempts: int
    idempotency_key: str


class Attempt(BaseModel):
    number: int
    started_at: str
    finished_at: str | None
    outcome: str | None
    error_code: str | None
    detail: str | None
    provider_id: str | None


class ProviderEvent(BaseModel):
    status: str
    error_code: str | None
    received_at: str
    payload: dict[str, Any]


class MessageDetail(MessageSummary):
    enrollment_id: int | None
    step_key: str | None
    appointment_id: int | None
    not_after: str | None
    provider_id: str | None
    provider_status: str | None
    error_code: str | None
    segments: int | None
    price: str | None
    sent_at: str | None
    attempts_log: list[Attempt]
    events: list[ProviderEvent]


class MessagePage(BaseModel):
    messages: list[MessageSummary]
    next_cursor: str | None


@router.get("", name="messages.list", response_model=MessagePage)
def query_messages(
    call: Staff,
    request: Request,
    contact_id: Annotated[Id | None, Query()] = None,
    state: Annotated[MessageState | None, Query()] = None,
    channel: Annotated[Channel | None, Query()] = None,
    campaign: Annotated[Text | None, Query(max_length=64, description="A campaign's slug.")] = None,
    due_from: Annotated[Instant | None, Query(description="Due at or after this instant.")] = None,
    due_before: Annotated[Instant | None, Query(description="Due before this instant.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[Text | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """Messages in the order they were scheduled (by id), so a cursor walks them all however
    many are added meanwhile, each page fast however many there are; filters combine."""
    size = page_limit(request, limit)
    found = list_messages(
        call.session,
        contact_id=contact_id,
        state=str(state) if state else None,
        campaign=campaign,
        channel=str(channel) if channel else None,
        due_from=due_from,
        due_until=due_before,
        after_id=decode_cursor(cursor),
        limit=size + 1,
        order="created",
    )
    page = found[:size]
    call.about("contact" if contact_id else "message", contact_id, count=len(page))
    return {"messages": page, "next_cursor": encode_cursor(page[-1]["id"]) if len(found) > size else None}


@router.get("/{message_id}", name="messages.read", response_model=MessageDetail)
def read_message(call: Staff, message_id: Id) -> dict[str, Any]:
    call.about("message", message_id)
    return message_detail(call.session, message_id)
