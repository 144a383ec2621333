"""Binding a patient's "1" (confirm) or "2" (reschedule) to the visit they meant — or to staff.

An **open confirmation request** is an automated appointment message that asked "Reply 1 to
confirm, 2 to reschedule" (its ``context["confirms"]`` lists the visits it asked about, with
their versions), that went out (state ``sent`` or ``delivered``) to one of the contacts with
the sender's number in the last ``REQUEST_LOOKBACK``, for a visit that has not started, is not
cancelled or moved since (same version) and — for "1" — is not already confirmed.

* the most recent open request wins: "1" confirms its visit(s) (a booking confirmation for a
  series asks about all of them) and "2" marks them ``reschedule_requested`` and opens a staff
  task; a short acknowledgement SMS follows;
* unless it is ambiguous — open requests for more than one patient (a shared phone), or
  another open request for a different visit sent within ``AMBIGUITY_GAP`` before the most
  recent one: then a staff task lists every candidate and nothing changes. We never guess;
* no open request but a recent one for a visit that has already started → a staff task
  ("reply about a visit already past");
* nothing at all → False: the reply goes to the staff inbox as an ordinary message.

Idempotent per inbound message (the inbound task may run twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from outreach.appointments import service
from outreach.appointments.materialise import confirms_of
from outreach.config import Settings
from outreach.content.rendering import appointment_context
from outreach.models import (
    Appointment,
    AppointmentStatus,
    Contact,
    InboundClass,
    InboundMessage,
    InboxItem,
    Message,
    MessageKind,
    MessageState,
)
from outreach.replies import responses, staff
from outreach.replies.classify import Classification

REQUEST_LOOKBACK = timedelta(days=14)
# A reply this long after a visit started is still worth a staff task, not silence.
PAST_VISIT_LOOKBACK = timedelta(days=3)
# Two requests for different visits sent this close together: the reply may answer either.
AMBIGUITY_GAP = timedelta(hours=12)
REQUEST_SENT_STATES = (str(MessageState.SENT), str(MessageState.DELIVERED))
CONFIRMED_ACK_TEMPLATE = "sms/appointments/confirmed_ack"
RESCHEDULE_ACK_TEMPLATE = "sms/appointments/reschedule_ack"
ACK_PURPOSE = "appointment_ack"


@dataclass(frozen=True)
class Request:
    message_id: int
    contact_id: int
    sent_at: datetime
    appointment: Appointment


def appointment_reply(
    session: Session,
    settings: Settings,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    classification: Classification,
    now: datetime,
) -> bool:
    """Handle a confirm/reschedule reply; False hands it to the staff inbox as a message."""
    kind = classification.classification
    if kind not in (InboundClass.CONFIRM, InboundClass.RESCHEDULE) or not contacts:
        return False
    if _already_handled(session, inbound):
        return True
    wanted = (
        {str(AppointmentStatus.BOOKED), str(AppointmentStatus.CONFIRMED)}
        if kind == InboundClass.CONFIRM
        else set(service.LIVE)
    )
    requests = recent_requests(session, [c.id for c in contacts], now)
    open_ = [r for r in requests if r.appointment.starts_at > now and r.appointment.status in wanted]
    if not open_:
        past = [r for r in requests if now - PAST_VISIT_LOOKBACK < r.appointment.starts_at <= now]
        if past:
            _ambiguity_task(
                session, inbound, contacts, kind, past, "the visit it answers has already started"
            )
            return True
        return False
    latest = open_[0]  # newest first
    rivals = [
        r for r in open_ if r.message_id != latest.message_id and r.sent_at >= latest.sent_at - AMBIGUITY_GAP
    ]
    patients = {r.contact_id for r in open_}
    if rivals or len(patients) > 1:
        why = "a phone shared by several patients" if len(patients) > 1 else "several open requests"
        _ambiguity_task(session, inbound, contacts, kind, open_, why)
        return True
    open_ = [r for r in open_ if r.message_id == latest.message_id]
    targets = [r.appointment for r in open_]
    if kind == InboundClass.CONFIRM:
        _confirm(session, settings, inbound, contacts, targets, now)
    else:
        _request_reschedule(session, settings, inbound, contacts, targets, now)
    return True


def recent_requests(session: Session, contact_ids: Sequence[int], now: datetime) -> list[Request]:
    """Confirmation requests that reached these contacts lately, newest first, one per visit
    asked about, current version only."""
    rows = session.scalars(
        select(Message)
        .where(
            Message.contact_id.in_(list(contact_ids)),
            Message.appointment_id.is_not(None),
            Message.kind == str(MessageKind.AUTOMATED),
            Message.state.in_(REQUEST_SENT_STATES),
            Message.sent_at >= now - REQUEST_LOOKBACK,
        )
        .order_by(Message.sent_at.desc(), Message.id.desc())
    ).all()
    found: list[Request] = []
    seen: set[int] = set()
    for message in rows:
        for appointment_id, version in confirms_of(message):
            appointment = session.get(Appointment, appointment_id)
            if appointment is None or appointment.id in seen or appointment.version != version:
                continue
            seen.add(appointment.id)
            assert message.contact_id is not None and message.sent_at is not None
            found.append(Request(message.id, message.contact_id, message.sent_at, appointment))
    return found


def _already_handled(session: Session, inbound: InboundMessage) -> bool:
    task = exists().where(
        InboxItem.inbound_message_id == inbound.id, InboxItem.kind == str(staff.ItemKind.TASK)
    )
    ack = exists().where(Message.idempotency_key == responses.reply_key(inbound.id, ACK_PURPOSE))
    return bool(session.scalar(select(or_(task, ack))))


def _confirm(
    session: Session,
    settings: Settings,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    targets: Sequence[Appointment],
    now: datetime,
) -> None:
    changed = [service.confirm(session, settings, a.id, now=now) for a in targets]
    if all(c.action == "unchanged" for c in changed):
        return  # a second "1": already confirmed, nothing new to say
    _ack(session, inbound, contacts, targets, CONFIRMED_ACK_TEMPLATE, now)


def _request_reschedule(
    session: Session,
    settings: Settings,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    targets: Sequence[Appointment],
    now: datetime,
) -> None:
    for appointment in targets:
        service.request_reschedule(session, settings, appointment.id, now=now)
    item = staff.open_item(
        session,
        inbound,
        contacts,
        staff.ItemKind.TASK,
        str(InboundClass.RESCHEDULE),
        "The patient asked to reschedule: call them to find a new time.",
    )
    item.candidates = [_candidate(r, None) for r in targets]
    _ack(session, inbound, contacts, targets, RESCHEDULE_ACK_TEMPLATE, now)


def _ack(
    session: Session,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    targets: Sequence[Appointment],
    template: str,
    now: datetime,
) -> None:
    first = min(targets, key=lambda a: a.starts_at)
    context: dict[str, object] = {**appointment_context(first), "visit_count": len(targets)}
    responses.insert_reply(
        session, inbound, contacts, template, ACK_PURPOSE, now, context=context, not_after=first.starts_at
    )


def _ambiguity_task(
    session: Session,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    kind: str,
    requests: Sequence[Request],
    why: str,
) -> None:
    answer = "1 (confirm)" if kind == InboundClass.CONFIRM else "2 (reschedule)"
    item = staff.open_item(
        session,
        inbound,
        contacts,
        staff.ItemKind.TASK,
        str(kind),
        f"Reply {answer} could not be matched to one visit ({why}). Check with the patient, "
        "then confirm or reschedule the right appointment.",
    )
    item.candidates = [_candidate(r.appointment, r.message_id) for r in requests]


def _candidate(appointment: Appointment, message_id: int | None) -> dict[str, object]:
    local = appointment.starts_at.astimezone(ZoneInfo(appointment.timezone))
    return {
        "appointment_id": appointment.id,
        "contact_id": appointment.contact_id,
        "starts_at": local.isoformat(),
        "type": appointment.type,
        "status": appointment.status,
        "request_message_id": message_id,
    }
