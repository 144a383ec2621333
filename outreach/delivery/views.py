"""Read-only views of the outbox for the CLI (and later the web UI and JSON API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from outreach.errors import NotFound
from outreach.models import Campaign, Contact, Enrollment, Message, MessageState


def _summary(message: Message, zone: ZoneInfo | None) -> dict[str, Any]:
    return {
        "id": message.id,
        "contact_id": message.contact_id,
        "channel": message.channel,
        "category": message.category,
        "kind": message.kind,
        "template": message.template,
        "due_at": message.due_at.isoformat(),
        "local_due_at": message.due_at.astimezone(zone).isoformat() if zone else None,
        "state": message.state,
        "state_reason": message.state_reason,
        "attempts": message.attempts,
        "idempotency_key": message.idempotency_key,
    }


def list_messages(
    session: Session,
    *,
    contact_id: int | None = None,
    state: str | None = None,
    campaign: str | None = None,
    channel: str | None = None,
    due_from: datetime | None = None,
    due_before: datetime | None = None,
    after_id: int | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Messages by due time (then id), newest schedule last; filters combine. ``after_id``
    continues after that message in this order (the API's cursor)."""
    if state is not None and state not in {str(s) for s in MessageState}:
        raise NotFound(f"unknown message state {state!r}; one of {', '.join(s.value for s in MessageState)}")
    query = (
        select(Message, Contact.timezone)
        .outerjoin(Contact, Contact.id == Message.contact_id)
        .order_by(Message.due_at, Message.id)
        .limit(limit)
    )
    if contact_id is not None:
        query = query.where(Message.contact_id == contact_id)
    if state is not None:
        query = query.where(Message.state == state)
    if channel is not None:
        query = query.where(Message.channel == channel)
    if due_from is not None:
        query = query.where(Message.due_at >= due_from)
    if due_before is not None:
        query = query.where(Message.due_at < due_before)
    anchor = session.get(Message, after_id) if after_id is not None else None
    if anchor is not None:
        query = query.where(
            (Message.due_at > anchor.due_at) | ((Message.due_at == anchor.due_at) & (Message.id > anchor.id))
        )
    if campaign is not None:
        query = (
            # Through the contact too: messages have no index on enrollment_id, and
            # ix_messages_contact_state serves the join this way.
            query.join(
                Enrollment,
                and_(Enrollment.id == Message.enrollment_id, Enrollment.contact_id == Message.contact_id),
            )
            .join(Campaign, Campaign.id == Enrollment.campaign_id)
            .where(Campaign.slug == campaign)
        )
    return [
        _summary(message, ZoneInfo(tz) if tz else None) for message, tz in session.execute(query)
    ]


def message_detail(session: Session, message_id: int) -> dict[str, Any]:
    """One message with its attempts and provider events (the delivery log). No body text:
    the log is for staff tracing delivery, and bodies are patient data."""
    message = session.get(Message, message_id)
    if message is None:
        raise NotFound(f"no message with id {message_id}")
    contact = session.get(Contact, message.contact_id) if message.contact_id is not None else None
    detail = _summary(message, ZoneInfo(contact.timezone) if contact else None)
    detail.update(
        {
            "enrollment_id": message.enrollment_id,
            "step_key": message.step_key,
            "appointment_id": message.appointment_id,
            "not_after": message.not_after.isoformat() if message.not_after else None,
            "provider_id": message.provider_id,
            "provider_status": message.provider_status,
            "error_code": message.error_code,
            "segments": message.segments,
            "price": message.price,
            "sent_at": message.sent_at.isoformat() if message.sent_at else None,
            "attempts_log": [
                {
                    "number": a.number,
                    "started_at": a.started_at.isoformat(),
                    "finished_at": a.finished_at.isoformat() if a.finished_at else None,
                    "outcome": a.outcome,
                    "error_code": a.error_code,
                    "detail": a.detail,
                    "provider_id": a.provider_id,
                }
                for a in message.attempts_log
            ],
            "events": [
                {
                    "status": e.status,
                    "error_code": e.error_code,
                    "received_at": e.received_at.isoformat(),
                    "payload": e.payload,
                }
                for e in message.events
            ],
        }
    )
    return detail
