"""The staff inbox as service functions, shared by the CLI and the staff web app (/inbox);
a JSON API can call the same ones.

Items are created by inbound processing (``outreach.replies``): one open conversation per
sender, crisis cases (urgent), and tasks. Staff list and read them, reply, assign, mark them
handled, and clear a crisis pause.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from outreach import outbox
from outreach.config import Settings
from outreach.delivery.conversation import conversational_window_open, last_inbound_at
from outreach.errors import NotFound, OutreachError
from outreach.models import (
    Category,
    Channel,
    Contact,
    InboundMessage,
    InboxItem,
    InboxState,
    Message,
    MessageKind,
    MessageState,
)
from outreach.ops import metrics
from outreach.replies.effects import sms_opted_out
from outreach.replies.pause import Pause, pause_of

log = logging.getLogger(__name__)

# Twilio's limit for one message body.
MAX_REPLY_LENGTH = 1600
StateFilter = Literal["open", "unread", "read", "handled", "all"]


class ReplyRefused(OutreachError):
    """A staff reply that must not be sent (opted-out number, no single recipient, bad text)."""


@dataclass(frozen=True)
class ItemSummary:
    id: int
    kind: str
    state: str
    urgent: bool
    classification: str | None
    text: str
    contact_id: int | None
    contact_name: str | None
    assigned_to: str | None
    created_at: datetime
    handled_at: datetime | None
    handled_by: str | None
    candidates: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ConversationEntry:
    direction: Literal["in", "out"]
    at: datetime
    text: str
    # The classification of an inbound message, the delivery state of an outbound one.
    detail: str
    id: int


@dataclass(frozen=True)
class ItemDetail:
    item: ItemSummary
    phone: str | None
    automation_paused_at: datetime | None
    # Since when, by which reply, how to clear it (None: not paused).
    pause: Pause | None
    sms_opted_out: bool
    conversation: list[ConversationEntry]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ReplyQueued:
    message_id: int
    # False: the patient wrote too long ago, so dispatch holds it for the sending window.
    goes_out_any_hour: bool


def list_items(
    session: Session,
    *,
    state: StateFilter = "open",
    urgent_only: bool = False,
    contact_id: int | None = None,
    assigned_to: str | None = None,
    limit: int = 200,
) -> list[ItemSummary]:
    """Items, urgent first, then newest first. ``open`` means unread or read."""
    query = select(InboxItem, Contact).outerjoin(Contact, Contact.id == InboxItem.contact_id)
    if state == "open":
        query = query.where(InboxItem.state != InboxState.HANDLED)
    elif state != "all":
        query = query.where(InboxItem.state == state)
    if urgent_only:
        query = query.where(InboxItem.urgent.is_(True))
    if contact_id is not None:
        query = query.where(InboxItem.contact_id == contact_id)
    if assigned_to is not None:
        query = query.where(InboxItem.assigned_to == assigned_to)
    query = query.order_by(InboxItem.urgent.desc(), InboxItem.created_at.desc(), InboxItem.id.desc())
    return [_summary(item, contact) for item, contact in session.execute(query.limit(limit)).all()]


def show_item(session: Session, item_id: int, *, mark_read: bool = True) -> ItemDetail:
    """One item with the whole conversation with that sender, oldest first.

    Reading an unread item marks it read (pass ``mark_read=False`` to peek).
    """
    item = _get(session, item_id)
    contact = session.get(Contact, item.contact_id) if item.contact_id is not None else None
    if mark_read and item.state == InboxState.UNREAD:
        item.state = InboxState.READ
    phone = contact.phone if contact is not None else _sender_of(session, item)
    contact_ids = [contact.id] if contact is not None else _candidate_ids(item)
    return ItemDetail(
        item=_summary(item, contact),
        phone=phone,
        automation_paused_at=contact.automation_paused_at if contact is not None else None,
        pause=pause_of(session, contact.id) if contact is not None else None,
        sms_opted_out=sms_opted_out(session, contact.id) if contact is not None else False,
        conversation=_conversation(session, phone, contact_ids),
    )


def reply(
    session: Session,
    settings: Settings,
    item_id: int,
    text: str,
    staff: str,
    now: datetime,
    *,
    contact_id: int | None = None,
) -> ReplyQueued:
    """Queue a staff SMS to the patient of an item (kind ``conversational``).

    ``contact_id`` picks the recipient when the item lists candidates (a shared phone).
    Refused, with a reason, for an opted-out number: the clinic must phone instead.
    """
    item = _get(session, item_id)
    text = text.strip()
    if not text:
        raise ReplyRefused("the reply text is empty")
    if len(text) > MAX_REPLY_LENGTH:
        raise ReplyRefused(f"the reply is longer than {MAX_REPLY_LENGTH} characters")
    recipient = _recipient(session, item, contact_id)
    outbox.lock_contacts(session, [recipient.id])
    if not recipient.phone:
        raise ReplyRefused(f"contact {recipient.id} has no phone number")
    if sms_opted_out(session, recipient.id):
        raise ReplyRefused(f"contact {recipient.id} has opted out of SMS: phone them instead")
    key = f"inbox:{item.id}:reply:{uuid.uuid4().hex}"
    outbox.insert_messages(
        session,
        [
            {
                "idempotency_key": key,
                "contact_id": recipient.id,
                "channel": Channel.SMS,
                "category": Category.CARE,
                "kind": MessageKind.CONVERSATIONAL,
                "body_override": text,
                "context": {"inbox_item_id": item.id, "staff": staff},
                "due_at": now,
            }
        ],
        now=now,
    )
    message_id = session.scalars(select(Message.id).where(Message.idempotency_key == key)).one()
    if item.state == InboxState.UNREAD:
        item.state = InboxState.READ
    window = conversational_window_open(
        last_inbound_at(session, recipient.phone), now, settings.conversational_window_hours
    )
    log.info("inbox item %s: reply queued as message %s by %s", item.id, message_id, staff)
    return ReplyQueued(message_id=message_id, goes_out_any_hour=window)


def mark_handled(session: Session, item_id: int, staff: str, now: datetime) -> ItemSummary:
    """Close an item. A crisis item's automation pause stays until ``clear_crisis_pause``."""
    item = _get(session, item_id)
    if item.state != InboxState.HANDLED:
        item.state = InboxState.HANDLED
        item.handled_at = now
        item.handled_by = staff
        if item.kind == "crisis":
            metrics.CRISIS_FIRST_ACTION.observe(max((now - item.created_at).total_seconds(), 0.0))
    return _summary(item, _contact_of(session, item))


def assign(session: Session, item_id: int, name: str) -> ItemSummary:
    name = name.strip()
    if not name:
        raise OutreachError("the assignee name is empty")
    item = _get(session, item_id)
    item.assigned_to = name
    return _summary(item, _contact_of(session, item))


def clear_crisis_pause(session: Session, contact_id: int, staff: str, now: datetime) -> bool:
    """Let automation reach this contact again; False when no pause was set.

    Held automated messages resume at dispatch's next look (they were held, not cancelled).
    """
    contacts = outbox.lock_contacts(session, [contact_id])
    if not contacts:
        raise NotFound(f"contact {contact_id} does not exist")
    contact = contacts[0]
    if contact.automation_paused_at is None:
        return False
    contact.automation_paused_at = None
    contact.automation_paused_reason = None
    contact.updated_at = now
    log.info("automation pause for contact %s cleared by %s at %s", contact_id, staff, now.isoformat())
    return True


def _get(session: Session, item_id: int) -> InboxItem:
    item = session.get(InboxItem, item_id)
    if item is None:
        raise NotFound(f"inbox item {item_id} does not exist")
    return item


def _contact_of(session: Session, item: InboxItem) -> Contact | None:
    return session.get(Contact, item.contact_id) if item.contact_id is not None else None


def _summary(item: InboxItem, contact: Contact | None) -> ItemSummary:
    return ItemSummary(
        id=item.id,
        kind=item.kind,
        state=item.state,
        urgent=item.urgent,
        classification=item.classification,
        text=item.text,
        contact_id=item.contact_id,
        contact_name=contact.full_name if contact is not None else None,
        assigned_to=item.assigned_to,
        created_at=item.created_at,
        handled_at=item.handled_at,
        handled_by=item.handled_by,
        candidates=list(item.candidates or []),
    )


def _sender_of(session: Session, item: InboxItem) -> str | None:
    if item.inbound_message_id is None:
        return None
    return session.scalar(
        select(InboundMessage.from_address).where(InboundMessage.id == item.inbound_message_id)
    )


def _candidate_ids(item: InboxItem) -> list[int]:
    ids: list[int] = []
    for candidate in item.candidates or []:
        value = candidate.get("contact_id")
        if isinstance(value, int):
            ids.append(value)
    return ids


def _recipient(session: Session, item: InboxItem, contact_id: int | None) -> Contact:
    if contact_id is None:
        contact_id = item.contact_id
        if contact_id is None:
            if item.candidates:
                raise ReplyRefused(
                    f"inbox item {item.id} comes from a phone shared by several contacts: "
                    "choose one with --contact"
                )
            raise ReplyRefused(
                f"inbox item {item.id} comes from an unknown sender: add them as a contact first"
            )
    elif contact_id != item.contact_id and contact_id not in _candidate_ids(item):
        raise ReplyRefused(f"contact {contact_id} is not the sender of inbox item {item.id}")
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} does not exist")
    return contact


def _conversation(session: Session, phone: str | None, contact_ids: list[int]) -> list[ConversationEntry]:
    entries: list[ConversationEntry] = []
    if phone:
        for inbound in session.scalars(select(InboundMessage).where(InboundMessage.from_address == phone)):
            detail = inbound.classification or ""
            entries.append(ConversationEntry("in", inbound.received_at, inbound.body, detail, inbound.id))
    conditions = []
    if phone:
        conditions += [Message.to_address == phone, Message.to_override == phone]
    if contact_ids:
        conditions.append(Message.contact_id.in_(contact_ids))
    if conditions:
        outgoing = select(Message).where(
            Message.channel == Channel.SMS,
            Message.kind != MessageKind.ALERT,
            # Future campaign steps and reminders are the schedule, not the conversation.
            ~((Message.kind == MessageKind.AUTOMATED) & (Message.state == MessageState.SCHEDULED)),
            or_(*conditions),
        )
        for message in session.scalars(outgoing):
            text = message.body or message.body_override or f"[{message.template}]"
            at = message.sent_at or message.due_at
            entries.append(ConversationEntry("out", at, text, message.state, message.id))
    return sorted(entries, key=lambda e: (e.at, e.direction == "out", e.id))
