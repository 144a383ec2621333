"""Provider status callbacks: append the event, move the message forward, never back.

Callbacks arrive late, twice and out of order. Each one is kept as a ``MessageEvent``; the
message's state changes only when the new status ranks above the current one, and its
``provider_status`` only when Twilio's status ranks above the one recorded, so a late
"undelivered" never sits beside state "delivered". A callback for a message we do not know
is acknowledged and ignored (so Twilio stops retrying). Parsing and checking the form is
the channel's business (``outreach.channels.twilio.callbacks``); this module gets an event.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, lazyload

from outreach.channels.twilio.callbacks import StatusEvent
from outreach.channels.twilio.errors import FailureAction, classify_delivery_failure
from outreach.delivery.effects import apply_effect
from outreach.models import Message, MessageEvent, MessageState
from outreach.outbox import insert_messages

# Our states ranked by how far a message has got. Terminal states share the top rank, so
# "delivered" after "undelivered" (or the reverse) changes nothing.
RANK: dict[str, int] = {
    MessageState.SCHEDULED: 0,
    MessageState.QUEUED: 1,
    MessageState.SENDING: 2,
    MessageState.UNKNOWN: 2,
    MessageState.SENT: 3,
    MessageState.DELIVERED: 4,
    MessageState.UNDELIVERED: 4,
    MessageState.FAILED: 4,
    MessageState.CANCELLED: 4,
    MessageState.SKIPPED: 4,
    MessageState.EXPIRED: 4,
}

# Twilio's statuses as our states. queued/accepted/sending at Twilio all mean "accepted".
PROVIDER_STATUS: dict[str, MessageState] = {
    "accepted": MessageState.SENT,
    "scheduled": MessageState.SENT,
    "queued": MessageState.SENT,
    "sending": MessageState.SENT,
    "sent": MessageState.SENT,
    "delivered": MessageState.DELIVERED,
    "read": MessageState.DELIVERED,
    "undelivered": MessageState.UNDELIVERED,
    "failed": MessageState.FAILED,
    "canceled": MessageState.FAILED,
}

# Twilio's statuses ranked the same way, for ``provider_status``: "read" comes after "delivered".
PROVIDER_RANK: dict[str, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "partially_delivered": 4,
    "read": 5,
}

# A message that failed at the carrier with a transient code gets one later re-send.
RESEND_DELAY = timedelta(hours=2)


def handle(session: Session, event: StatusEvent, now: datetime) -> Message | None:
    """Record one callback. Returns the message it belonged to, or None if unknown."""
    match = [Message.provider_id == event.provider_id]
    if event.correlation_id:
        match.append(Message.correlation_id == event.correlation_id)
    # The message alone: its attempts and its events (every callback so far) are not needed
    # here, and loading them with it would cost two more queries per callback.
    found = select(Message).where(or_(*match)).limit(1).with_for_update()
    message = session.scalars(found.options(lazyload("*"))).first()
    if message is None:
        return None
    session.add(
        MessageEvent(
            message_id=message.id,
            status=event.status,
            error_code=event.error_code,
            payload=event.payload,
            received_at=now,
        )
    )
    target = PROVIDER_STATUS.get(event.status)
    values: dict[str, object] = {"updated_at": now}
    if _provider_status_advances(message.provider_status, event.status):
        values["provider_status"] = event.status
    if message.provider_id is None:
        values["provider_id"] = event.provider_id
    if target is not None and RANK[target] > RANK.get(message.state, 0):
        values["state"] = target
        values["provider_status"] = event.status
        values["lease_until"] = None
        if event.error_code:
            values["error_code"] = event.error_code
        if target in (MessageState.UNDELIVERED, MessageState.FAILED):
            values["state_reason"] = f"carrier reported {event.status}" + (
                f" (error {event.error_code})" if event.error_code else ""
            )
        # Conditional on the state we read, so two callbacks racing cannot move it backward.
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Message).where(Message.id == message.id, Message.state == message.state).values(**values)
        )
        moved = result.rowcount
        if moved and target in (MessageState.UNDELIVERED, MessageState.FAILED):
            _after_delivery_failure(session, message, event, now)
    elif len(values) > 1:
        # The row is locked (FOR UPDATE above; SQLite's write lock): what we read still holds.
        session.execute(update(Message).where(Message.id == message.id).values(**values))
    return message


def _provider_status_advances(current: str | None, new: str) -> bool:
    if new not in PROVIDER_RANK:
        return False
    return current is None or PROVIDER_RANK[new] > PROVIDER_RANK.get(current, -1)


def _after_delivery_failure(session: Session, message: Message, event: StatusEvent, now: datetime) -> None:
    failure = classify_delivery_failure(event.error_code, event.status)
    if failure.effect is not None:
        apply_effect(session, message, failure.effect, event.error_code, now)
    elif failure.action == FailureAction.RETRY_ONCE_LATER and ":resend" not in message.idempotency_key:
        # At most one delayed re-send, as a new outbox row: it passes every send-time check again.
        delay = timedelta(seconds=failure.retry_after) if failure.retry_after else RESEND_DELAY
        insert_messages(
            session,
            [
                {
                    "idempotency_key": f"{message.idempotency_key}:resend",
                    "contact_id": message.contact_id,
                    "channel": message.channel,
                    "category": message.category,
                    "kind": message.kind,
                    "template": message.template,
                    "context": message.context,
                    "body_override": message.body_override,
                    "to_override": message.to_override,
                    "enrollment_id": message.enrollment_id,
                    "step_key": message.step_key,
                    "appointment_id": message.appointment_id,
                    "appointment_version": message.appointment_version,
                    "reminder_key": message.reminder_key,
                    "due_at": now + delay,
                    "not_after": message.not_after,
                }
            ],
            now=now,
        )
