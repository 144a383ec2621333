"""The seam between inbound replies and appointments: what "1" and "2" do.

``process_inbound`` calls ``appointment_reply`` for every reply classified ``confirm`` or
``reschedule`` (digits "1"/"2", CONFIRM, Y, R, RESCHEDULE, N, NO; see
``outreach.replies.phrases``), after crisis, opt-out, opt-in and help have had their turn.

Contract for the implementation (today: ``outreach.appointments.replies.appointment_reply``,
which binds the reply to the visit whose confirmation request went out most recently):

- Called inside the inbound task's transaction, with the sender's contacts already locked
  (``outbox.lock_contacts``). ``contacts`` are every contact with the sender's phone number:
  none (unknown sender), one, or several (a shared phone: never guess between them).
- Return True when the reply was fully dealt with, including any staff task it needs
  (e.g. "2" -> ``reschedule_requested`` + a task). Return False to have the reply filed in the
  staff inbox as an ordinary conversation message carrying its classification; do that for
  anything ambiguous (no open confirmation request, several, a visit already past).
- Must be idempotent per ``inbound.id`` (a task can run twice) and must not send anything
  itself: replies are outbox rows (``outreach.outbox.insert_messages``) with keys derived
  from ``inbound.id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from outreach import appointments
from outreach.config import Settings
from outreach.models import Contact, InboundMessage
from outreach.replies.classify import Classification


def appointment_reply(
    session: Session,
    settings: Settings,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    classification: Classification,
    now: datetime,
) -> bool:
    """Bind the reply to the right visit, or return False to let staff handle it."""
    return appointments.appointment_reply(session, settings, inbound, contacts, classification, now)
