"""Is this patient's automation paused after a crisis reply, since when, and by which reply?

The one look-up every view of a patient or their messages uses (CLI, web pages, API), so they
all say the same thing. The pause itself is set by ``effects.pause_for_crisis`` and cleared by
``inbox.clear_crisis_pause``; dispatch holds automated messages while it lasts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.models import Contact, InboxItem, MessageKind, MessageState
from outreach.outbox.idsets import IdSets
from outreach.replies.effects import inbound_id_of_pause
from outreach.replies.staff import ItemKind

HELD_STATE = "held (crisis pause)"


@dataclass(frozen=True)
class Pause:
    contact_id: int
    since: datetime
    inbound_message_id: int | None
    # The urgent inbox item the reply raised; None until the reply's task has run.
    inbox_item_id: int | None

    @property
    def clear_command(self) -> str:
        return f"outreach inbox clear-pause {self.contact_id}"

    def as_dict(self) -> dict[str, object]:
        return {
            "since": self.since.isoformat(),
            "inbound_message_id": self.inbound_message_id,
            "inbox_item_id": self.inbox_item_id,
            "clear_with": self.clear_command,
        }


def pause_of(session: Session, contact_id: int) -> Pause | None:
    return pauses_of(session, [contact_id]).get(contact_id)


def pauses_of(session: Session, contact_ids: Iterable[int]) -> dict[int, Pause]:
    """The pauses in force among these contacts (contacts not paused are absent)."""
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Contact.id, Contact.automation_paused_at, Contact.automation_paused_reason).where(
            IdSets(session).among(Contact.id, ids), Contact.automation_paused_at.is_not(None)
        )
    ).all()
    causes = {cid: inbound_id_of_pause(reason) for cid, _, reason in rows}
    inbound_ids = [i for i in causes.values() if i is not None]
    items: dict[int | None, int] = {}
    if inbound_ids:
        found = session.execute(
            select(InboxItem.inbound_message_id, InboxItem.id).where(
                InboxItem.kind == ItemKind.CRISIS,
                IdSets(session).among(InboxItem.inbound_message_id, inbound_ids),
            )
        )
        items = {inbound_id: item_id for inbound_id, item_id in found}
    return {
        cid: Pause(cid, since, causes[cid], items.get(causes[cid]))
        for cid, since, _ in rows
        if since is not None
    }


def shown_state(state: str, kind: str, paused: bool) -> str:
    """The state staff read: a paused patient's automated messages are held, not "scheduled".

    Display only: the stored state stays ``scheduled`` so clearing the pause resumes them.
    """
    if paused and kind == MessageKind.AUTOMATED and state == MessageState.SCHEDULED:
        return HELD_STATE
    return state
