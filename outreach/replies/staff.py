"""Inbox items a reply creates: one open conversation per sender, plus tasks and crisis cases.

A conversation is keyed by the contact when the number belongs to exactly one contact, and by
the number itself otherwise (unknown senders, a phone shared by several contacts, who are then
listed as candidates for staff to choose from, never guessed).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.models import Contact, InboundMessage, InboxItem, InboxState


class ItemKind(StrEnum):
    MESSAGE = "message"  # a conversation with a patient (or unknown sender)
    CRISIS = "crisis"  # urgent: crisis language
    TASK = "task"  # something staff must do (call about a CANCEL, confirm consent, ...)


def candidates(contacts: Sequence[Contact]) -> list[dict[str, object]]:
    if len(contacts) < 2:
        return []
    return [{"contact_id": c.id, "name": c.full_name} for c in contacts]


def single_contact_id(contacts: Sequence[Contact]) -> int | None:
    return contacts[0].id if len(contacts) == 1 else None


def add_to_conversation(
    session: Session,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    classification: str,
) -> InboxItem:
    """File the message in the sender's open conversation, opening one if there is none.

    A new message makes the conversation unread again and becomes its headline text; the
    whole exchange is shown by ``outreach.replies.inbox.show_item``.
    """
    contact_id = single_contact_id(contacts)
    query = select(InboxItem).where(
        InboxItem.kind == ItemKind.MESSAGE, InboxItem.state != InboxState.HANDLED
    )
    if contact_id is not None:
        query = query.where(InboxItem.contact_id == contact_id)
    else:
        query = query.join(InboundMessage, InboundMessage.id == InboxItem.inbound_message_id).where(
            InboxItem.contact_id.is_(None), InboundMessage.from_address == inbound.from_address
        )
    item = session.scalars(query.order_by(InboxItem.id.desc()).limit(1)).first()
    if item is None:
        item = InboxItem(kind=ItemKind.MESSAGE, contact_id=contact_id, created_at=inbound.received_at)
        session.add(item)
    item.inbound_message_id = inbound.id
    item.classification = classification
    item.text = inbound.body
    item.state = InboxState.UNREAD
    item.candidates = candidates(contacts)
    session.flush()
    return item


def open_item(
    session: Session,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    kind: ItemKind,
    classification: str,
    text: str,
    *,
    urgent: bool = False,
) -> InboxItem:
    item = InboxItem(
        kind=kind,
        contact_id=single_contact_id(contacts),
        inbound_message_id=inbound.id,
        classification=classification,
        text=text,
        urgent=urgent,
        state=InboxState.UNREAD,
        candidates=candidates(contacts),
        created_at=inbound.received_at,
    )
    session.add(item)
    session.flush()
    return item
