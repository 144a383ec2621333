"""What ``process_inbound`` does for each classification. Each handler takes one ``Reply`` and
returns action names.

Consent changes and the crisis pause already happened in the webhook (``effects``); handlers
only write replies and alerts (outbox rows) and staff inbox items, so running one twice adds
nothing new (outbox keys are unique; the task claims the message once). A crisis message that
is also an opt-out ("stop texting me, I want to die") was opted out in the webhook, so the
crisis handler finds the number opted out and the alert asks staff to phone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import appointments
from outreach.config import Settings
from outreach.contacts import consent
from outreach.models import ConsentEvent, ConsentState, Contact, InboundClass, InboundMessage
from outreach.replies import effects, responses, staff
from outreach.replies.classify import (
    BARE_CANCEL,
    NATURAL_LANGUAGE,
    TWILIO_KEYWORD,
    Classification,
)
from outreach.replies.staff import ItemKind

log = logging.getLogger(__name__)

CANCEL_TASK_TEXT = (
    "The patient replied CANCEL, which opts them out of all texts. They may have meant to "
    "cancel an appointment: call them."
)
CRISIS_OPT_OUT_TASK_TEXT = (
    "A patient whose automation is paused after a crisis reply has opted out of SMS: phone them."
)
NOTHING_TO_RESTORE_TASK_TEXT = (
    "The patient asked to receive texts again, but there is no earlier SMS consent on record to "
    "restore: confirm consent with them before texting."
)



@dataclass(frozen=True)
class Reply:
    """One stored inbound message being processed, with everything a handler reads.

    ``contacts`` are every contact with the sender's phone number, locked by the caller
    (``outbox.lock_contacts``): none (unknown sender), one, or several (a shared phone).
    """

    session: Session
    settings: Settings
    inbound: InboundMessage
    contacts: Sequence[Contact]
    result: Classification
    now: datetime


Handler = Callable[[Reply], list[str]]


def handle(reply: Reply) -> list[str]:
    return HANDLERS.get(reply.result.classification, _other)(reply)


def _crisis(reply: Reply) -> list[str]:
    session, inbound, contacts = reply.session, reply.inbound, reply.contacts
    actions = [f"paused:{cid}" for cid in effects.pause_for_crisis(session, contacts, inbound, reply.now)]
    # An opted-out number cannot be texted (Twilio 21610): a human must phone instead.
    reply_possible = not _opted_out(reply)
    if reply_possible:
        _insert_reply(reply, responses.CRISIS_REPLY_TEMPLATE, responses.CRISIS_REPLY)
        actions.append("crisis_reply")
    text = inbound.body if reply_possible else f"[PHONE THE PATIENT: no SMS reply possible] {inbound.body}"
    item = staff.open_item(
        session, inbound, contacts, ItemKind.CRISIS, InboundClass.CRISIS, text, urgent=True
    )
    actions.append(f"inbox:crisis:{item.id}")
    alerts = responses.insert_alerts(session, reply.settings, inbound, item, reply_possible, reply.now)
    if not alerts:
        log.warning("crisis reply %s: no on-call contacts configured (OUTREACH_ONCALL_SMS / "
                    "OUTREACH_ONCALL_EMAIL); only the inbox item was raised", inbound.id)
        actions.append("no_oncall_configured")
    actions.extend(alerts)
    return actions


def _opt_out(reply: Reply) -> list[str]:
    session, inbound, contacts = reply.session, reply.inbound, reply.contacts
    actions: list[str] = []
    newly_opted_out = _consent_events(session, inbound, ConsentState.REVOKED)
    # Twilio answers its own keywords when it handles opt-out; a second text would break the
    # one-confirmation rule. It does not answer opt-outs in the patient's own words.
    if newly_opted_out and not _twilio_answered(reply):
        _insert_reply(
            reply,
            responses.OPT_OUT_CONFIRMATION_TEMPLATE,
            "opt_out_confirmation",
            # Dispatch lets exactly this message through after the opt-out.
            context={"after_opt_out": True},
            not_after=reply.now + responses.OPT_OUT_CONFIRMATION_WINDOW,
        )
        actions.append("opt_out_confirmation")
    if reply.result.has(BARE_CANCEL):
        item = staff.open_item(
            session, inbound, contacts, ItemKind.TASK, InboundClass.OPT_OUT, CANCEL_TASK_TEXT
        )
        actions.append(f"inbox:task:{item.id}")
    if any(c.automation_paused_at is not None for c in contacts):
        item = staff.open_item(
            session, inbound, contacts, ItemKind.TASK, InboundClass.OPT_OUT, CRISIS_OPT_OUT_TASK_TEXT,
            urgent=True,
        )
        actions.append(f"inbox:task:{item.id}")
    if reply.result.has(NATURAL_LANGUAGE) or not contacts:
        # The patient's own words may say more ("wrong number", "I moved"): staff read them.
        item = staff.add_to_conversation(session, inbound, contacts, InboundClass.OPT_OUT)
        actions.append(f"inbox:message:{item.id}")
    return actions


def _opt_in(reply: Reply) -> list[str]:
    session, inbound, contacts = reply.session, reply.inbound, reply.contacts
    actions: list[str] = []
    restored = _consent_events(session, inbound, ConsentState.GRANTED)
    if restored and not _twilio_answered(reply):
        _insert_reply(reply, responses.OPT_IN_CONFIRMATION_TEMPLATE, "opt_in_confirmation")
        actions.append("opt_in_confirmation")
    if not contacts:
        item = staff.add_to_conversation(session, inbound, contacts, InboundClass.OPT_IN)
        actions.append(f"inbox:message:{item.id}")
    elif not restored and any(effects.sms_opted_out(session, c.id) or
                              not _any_sms_granted(session, c.id) for c in contacts):
        item = staff.open_item(
            session, inbound, contacts, ItemKind.TASK, InboundClass.OPT_IN, NOTHING_TO_RESTORE_TASK_TEXT
        )
        actions.append(f"inbox:task:{item.id}")
    return actions


def _help(reply: Reply) -> list[str]:
    if _opted_out(reply):
        return ["help_not_sent:opted_out"]
    if _twilio_answered(reply):
        return ["help_answered_by_twilio"]
    _insert_reply(reply, responses.HELP_TEMPLATE, "help")
    return ["help_reply"]


def _appointment(reply: Reply) -> list[str]:
    """"1" / "2" (and CONFIRM, Y, R, RESCHEDULE, N, NO; see ``phrases``) bound to a visit.

    ``appointments.appointment_reply`` binds the reply to the visit whose confirmation
    request went out most recently, inside this transaction with the contacts locked. It
    returns False for anything ambiguous (no open request, several, a shared phone, a visit
    already past), and the reply is then filed for staff like any other message. It is
    idempotent per ``inbound.id`` and sends nothing itself (replies are outbox rows).
    """
    if appointments.appointment_reply(
        reply.session, reply.settings, reply.inbound, reply.contacts, reply.result, reply.now
    ):
        return [f"appointment:{reply.result.classification}"]
    return _other(reply)


def _other(reply: Reply) -> list[str]:
    """File the message for staff and tell the patient a person will answer.

    The answer goes at any hour (it replies to the patient's own text), never to an opted-out
    number nor during a crisis pause, and once per conversation window, so a patient writing
    five texts gets one.
    """
    item = staff.add_to_conversation(
        reply.session, reply.inbound, reply.contacts, reply.result.classification
    )
    actions = [f"inbox:message:{item.id}"]
    window = timedelta(hours=reply.settings.conversational_window_hours)
    if _opted_out(reply):
        actions.append("acknowledgement_not_sent:opted_out")
    elif any(c.automation_paused_at is not None for c in reply.contacts):
        # The crisis reply already said the team will reach out; "office hours" would undercut it.
        actions.append("acknowledgement_not_sent:crisis_pause")
    elif responses.acknowledged_since(reply.session, reply.inbound.from_address, reply.now - window):
        actions.append("acknowledgement_not_sent:already_in_window")
    else:
        _insert_reply(reply, responses.ACKNOWLEDGEMENT_TEMPLATE, "acknowledgement")
        actions.append("acknowledgement")
    return actions


def _insert_reply(
    reply: Reply,
    template: str,
    purpose: str,
    *,
    context: dict[str, object] | None = None,
    not_after: datetime | None = None,
) -> None:
    responses.insert_reply(
        reply.session, reply.inbound, reply.contacts, template, purpose, reply.now,
        context=context, not_after=not_after,
    )


def _opted_out(reply: Reply) -> bool:
    return any(effects.sms_opted_out(reply.session, c.id) for c in reply.contacts)


def _twilio_answered(reply: Reply) -> bool:
    """Twilio itself answered this keyword (its opt-out handling is on and the body is one)."""
    return reply.settings.twilio_handles_opt_out and reply.result.has(TWILIO_KEYWORD)


def _consent_events(session: Session, inbound: InboundMessage, state: ConsentState) -> bool:
    """Whether this very message changed consent that way (at webhook time)."""
    return (
        session.scalar(
            select(ConsentEvent.id)
            .where(ConsentEvent.inbound_message_id == inbound.id, ConsentEvent.state == state)
            .limit(1)
        )
        is not None
    )


def _any_sms_granted(session: Session, contact_id: int) -> bool:
    return "granted" in consent.summary(session, contact_id)["sms"].values()


HANDLERS: dict[InboundClass, Handler] = {
    InboundClass.CRISIS: _crisis,
    InboundClass.OPT_OUT: _opt_out,
    InboundClass.OPT_IN: _opt_in,
    InboundClass.HELP: _help,
    InboundClass.CONFIRM: _appointment,
    InboundClass.RESCHEDULE: _appointment,
    InboundClass.OTHER: _other,
}
