"""The send-time re-check: is this message still wanted, allowed, and addressed right *now*?

Everything here may have changed since the message was scheduled: consent, suppression,
the enrollment, the appointment, the contact's crisis pause, the clock. ``decide`` returns
one of three answers: go (with the address and sender), hold until a later instant (window,
pause, cap), or stop in a terminal state with a reason a person can read.

The checks read ``Facts``: everything they need for a whole batch of messages, loaded with
one query per kind (``load_facts``; ``load_call_facts`` for the look just before the
provider call), so checking 25 messages costs what checking one did.
Load them inside the transaction that holds the contacts' locks, so they cannot change
before the decision is acted on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.campaigns.reports import PAUSED_REASON
from outreach.closures import campaign_policy, load_closures
from outreach.config import Settings
from outreach.contacts import consent
from outreach.delivery import caps
from outreach.delivery.conversation import conversational_window_open, last_inbound_times
from outreach.models import (
    Appointment,
    AppointmentStatus,
    Campaign,
    Category,
    Channel,
    Consent,
    Contact,
    Enrollment,
    EnrollmentState,
    Message,
    MessageKind,
    MessageState,
    Suppression,
)
from outreach.outbox.idsets import IdSets

# How often a message held for a crisis pause looks again (staff may clear the pause any time).
PAUSE_RECHECK = timedelta(hours=1)
PAUSE_HOLD_REASON = "automation paused for this contact until staff clear it"


@dataclass(frozen=True)
class Go:
    to: str
    sender: str
    # The allowed window closes then (None: no window applies): a call that comes later,
    # after a wait for the rate limit, does not happen.
    send_by: datetime | None = None


@dataclass(frozen=True)
class Hold:
    until: datetime
    reason: str


@dataclass(frozen=True)
class Stop:
    state: MessageState
    reason: str


Decision = Go | Hold | Stop


@dataclass
class Facts:
    """What the checks read for a batch of messages. A missing key means no such row."""

    contacts: dict[int, Contact] = field(default_factory=dict)
    enrollments: dict[int, Enrollment] = field(default_factory=dict)
    campaigns: dict[int, Campaign] = field(default_factory=dict)  # by campaign id
    appointments: dict[int, Appointment] = field(default_factory=dict)
    consents: dict[tuple[int, str, str], str] = field(default_factory=dict)  # -> consent state
    suppressions: dict[tuple[str, str], str] = field(default_factory=dict)  # (channel, address) -> reason
    closures: frozenset[date] = frozenset()
    # Per contact, (message id, instant) of capped messages that left recently (``caps``).
    recent: dict[int, list[tuple[int, datetime]]] = field(default_factory=dict)
    # Per contact, automated messages near today, for the daily limit (``caps.care_first``).
    loads: dict[int, list[caps.DayLoad]] = field(default_factory=dict)
    last_inbound: dict[str, datetime] = field(default_factory=dict)  # by phone number

    def consent(self, contact_id: int, channel: str, category: str) -> str:
        return consent.view_of(self.consents.get((contact_id, channel, category)))

    def counted_send(self, message: Message, now: datetime) -> None:
        """A counted message of this batch is about to go: the batch's later ones must see it."""
        if message.contact_id is None or message.kind != MessageKind.AUTOMATED:
            return
        if caps.is_capped(message.kind, message.category):
            self.recent.setdefault(message.contact_id, []).append((message.id, now))
        loads = self.loads.setdefault(message.contact_id, [])
        loads[:] = [x for x in loads if x.message_id != message.id]
        loads.append(caps.DayLoad(message.id, message.category == Category.CARE, now, left=True))


def load_facts(
    session: Session, messages: Sequence[Message], contacts: Iterable[Contact], now: datetime
) -> Facts:
    """Everything ``decide`` reads for ``messages`` when they are prepared.

    The rows loaded also sit in the session's identity map, where rendering finds them.
    """
    facts = Facts(contacts={c.id: c for c in contacts})
    sets = IdSets(session)
    _load_wanted(session, sets, facts, messages)
    campaign_ids = sorted({e.campaign_id for e in facts.enrollments.values()})
    if campaign_ids:
        facts.campaigns = {
            c.id: c for c in session.scalars(select(Campaign).where(sets.among(Campaign.id, campaign_ids)))
        }
    facts.suppressions = _suppressions(session, sets, _addresses(facts, messages))
    if any(m.kind in (MessageKind.AUTOMATED, MessageKind.CONVERSATIONAL) for m in messages):
        facts.closures = load_closures(session)
    capped = sorted({m.contact_id for m in messages if m.contact_id and caps.is_capped(m.kind, m.category)})
    facts.recent = caps.recent_sends(session, capped, now)
    automated = sorted({m.contact_id for m in messages if m.contact_id and m.kind == MessageKind.AUTOMATED})
    facts.loads = caps.day_loads(session, automated, now)
    phones = sorted(
        {
            contact.phone
            for m in messages
            if m.kind == MessageKind.CONVERSATIONAL
            and m.contact_id is not None
            and (contact := facts.contacts.get(m.contact_id)) is not None
            and contact.phone
        }
    )
    facts.last_inbound = last_inbound_times(session, phones)
    return facts


def load_call_facts(session: Session, messages: Sequence[Message]) -> Facts:
    """What the last look before the provider call (``still_wanted``, ``consent_problem``)
    reads: the consents, enrollments and appointments, which may change after prepare."""
    facts = Facts()
    _load_wanted(session, IdSets(session), facts, messages)
    return facts


def _load_wanted(session: Session, sets: IdSets, facts: Facts, messages: Sequence[Message]) -> None:
    """Into ``facts``: what ``still_wanted`` and ``consent_problem`` read, at both looks."""
    contact_ids = sorted({m.contact_id for m in messages if m.contact_id is not None})
    enrollment_ids = sorted({m.enrollment_id for m in messages if m.enrollment_id is not None})
    appointment_ids = sorted({m.appointment_id for m in messages if m.appointment_id is not None})
    if contact_ids:
        rows = session.execute(
            select(Consent.contact_id, Consent.channel, Consent.category, Consent.state).where(
                sets.among(Consent.contact_id, contact_ids)
            )
        )
        facts.consents = {
            (contact_id, channel, category): state for contact_id, channel, category, state in rows
        }
    if enrollment_ids:
        facts.enrollments = {
            e.id: e
            for e in session.scalars(select(Enrollment).where(sets.among(Enrollment.id, enrollment_ids)))
        }
    if appointment_ids:
        facts.appointments = {
            a.id: a
            for a in session.scalars(select(Appointment).where(sets.among(Appointment.id, appointment_ids)))
        }


def _addresses(facts: Facts, messages: Sequence[Message]) -> set[tuple[str, str]]:
    """(channel, address) of every recipient in the batch."""
    found: set[tuple[str, str]] = set()
    for m in messages:
        if m.to_override:
            found.add((m.channel, m.to_override))
        contact = facts.contacts.get(m.contact_id) if m.contact_id is not None else None
        if contact is not None:
            address = contact.phone if m.channel == Channel.SMS else contact.email
            if address:
                found.add((m.channel, address))
    return found


def _suppressions(
    session: Session, sets: IdSets, recipients: set[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    if not recipients:
        return {}
    # Channel and address both, so the (channel, address) unique index serves the look-up.
    rows = session.execute(
        select(Suppression.channel, Suppression.address, Suppression.reason).where(
            Suppression.channel.in_(sorted({channel for channel, _ in recipients})),
            sets.among(Suppression.address, sorted({address for _, address in recipients})),
        )
    )
    return {
        (channel, address): reason for channel, address, reason in rows if (channel, address) in recipients
    }


def decide(facts: Facts, settings: Settings, message: Message, now: datetime) -> Decision:
    if message.not_after is not None and now > message.not_after:
        return Stop(MessageState.EXPIRED, "its time passed before it could be sent")
    sender = sender_for(settings, message.channel)
    if message.kind == MessageKind.ALERT:
        if not message.to_override:
            return Stop(MessageState.FAILED, "alert has no recipient")
        return Go(message.to_override, sender)
    contact = facts.contacts.get(message.contact_id) if message.contact_id is not None else None
    if contact is None:
        if message.kind == MessageKind.SYSTEM and message.to_override and message.contact_id is None:
            # A reply to a number we have no contact for (HELP, a crisis reply to a stranger).
            return _suppression_stop(facts, message.channel, message.to_override) or Go(
                message.to_override, sender
            )
        return Stop(MessageState.CANCELLED, "the contact no longer exists")
    stopped = still_wanted(facts, message)
    if stopped is not None:
        return stopped
    problem = consent_problem(facts, message)
    if problem:
        return Stop(MessageState.SKIPPED, problem)
    to = message.to_override or (contact.phone if message.channel == Channel.SMS else contact.email)
    if not to:
        return Stop(
            MessageState.SKIPPED,
            f"the contact has no {'phone number' if message.channel == Channel.SMS else 'email address'}",
        )
    suppressed = _suppression_stop(facts, message.channel, to)
    if suppressed:
        return suppressed
    timing = _timing(facts, settings, message, contact, now)
    if isinstance(timing, (Hold, Stop)):
        return timing
    return Go(to, sender, send_by=timing)


def _suppression_stop(facts: Facts, channel: str, address: str) -> Stop | None:
    reason = facts.suppressions.get((channel, address))
    return Stop(MessageState.SKIPPED, f"address suppressed: {reason}") if reason else None


def still_wanted(facts: Facts, message: Message) -> Stop | None:
    """Is the campaign or appointment behind this message still as it was? (Re-checked just
    before the provider call too: a reschedule may commit between prepare and call.)"""
    if message.enrollment_id is not None:
        enrollment = facts.enrollments.get(message.enrollment_id)
        if enrollment is None or enrollment.state in (EnrollmentState.UNENROLLED, EnrollmentState.COMPLETED):
            return Stop(MessageState.CANCELLED, "the contact left the campaign")
        if enrollment.state == EnrollmentState.PAUSED:
            # The same words as pause itself: resume re-creates exactly these.
            return Stop(MessageState.CANCELLED, PAUSED_REASON)
        if message.channel in (enrollment.stopped_channels or []):
            return Stop(MessageState.CANCELLED, f"{message.channel} steps stopped for this enrollment")
    if message.appointment_id is not None:
        appointment = facts.appointments.get(message.appointment_id)
        if appointment is None or appointment.status == AppointmentStatus.CANCELLED:
            return Stop(MessageState.CANCELLED, "the appointment was cancelled")
        if message.appointment_version is not None and appointment.version != message.appointment_version:
            return Stop(MessageState.CANCELLED, "the appointment was rescheduled")
    return None


def consent_problem(facts: Facts, message: Message) -> str | None:
    """Why this patient must not get this message now, or None.

    Automated messages need consent for their exact channel and category. Replies to the
    patient (HELP, crisis reply, staff conversation) need only that the patient has not
    opted out of the channel; an opt-out confirmation is the one message allowed after it.
    """
    if message.contact_id is None or message.kind == MessageKind.ALERT:
        return None
    if message.kind == MessageKind.AUTOMATED:
        if facts.consent(message.contact_id, message.channel, message.category) == "granted":
            return None
        return f"no {message.category} consent for {message.channel}"
    if (message.context or {}).get("after_opt_out"):
        return None
    if facts.consent(message.contact_id, message.channel, "care") == "revoked":
        return f"the contact opted out of {message.channel}"
    return None


def _timing(
    facts: Facts, settings: Settings, message: Message, contact: Contact, now: datetime
) -> Hold | Stop | datetime | None:
    """A hold or a stop, or when the window the message may go in closes (None: no window)."""
    if message.kind == MessageKind.SYSTEM:
        return None  # HELP, crisis and opt-out replies go at once, at any hour
    if message.kind == MessageKind.AUTOMATED and contact.automation_paused_at is not None:
        return Hold(now + PAUSE_RECHECK, PAUSE_HOLD_REASON)
    zone = ZoneInfo(contact.timezone)
    policy = campaign_policy(settings, _campaign_of(facts, message), facts.closures)
    if message.kind == MessageKind.CONVERSATIONAL and _conversation_open(facts, settings, contact, now):
        return None
    if not policy.allows(now, zone):
        opening = policy.next_opening(now, zone)
        if message.not_after is not None and opening > message.not_after:
            return Stop(
                MessageState.SKIPPED, "the allowed window opens only after the message stops being useful"
            )
        return Hold(opening, "outside the allowed sending window; moved to the next opening")
    if message.kind == MessageKind.AUTOMATED:
        recent = facts.recent.get(contact.id, [])
        later = caps.cap_deferral(policy, settings, message, zone, recent, now)
        if later is not None:
            return Hold(later, "frequency cap reached; moved to the next allowed day")
        verdict = caps.care_first(policy, settings, message, zone, facts.loads.get(contact.id, []), now)
        if verdict is not None:
            if verdict.until is None:
                return Stop(MessageState.SKIPPED, verdict.reason)
            return Hold(verdict.until, verdict.reason)
    return policy.closes(now, zone)


def _campaign_of(facts: Facts, message: Message) -> Campaign | None:
    enrollment = facts.enrollments.get(message.enrollment_id) if message.enrollment_id is not None else None
    return facts.campaigns.get(enrollment.campaign_id) if enrollment is not None else None


def _conversation_open(facts: Facts, settings: Settings, contact: Contact, now: datetime) -> bool:
    """Staff replies may go outside the window shortly after the patient's own message."""
    if not contact.phone:
        return False
    last = facts.last_inbound.get(contact.phone)
    return conversational_window_open(last, now, settings.conversational_window_hours)


def sender_for(settings: Settings, channel: str) -> str:
    if channel == Channel.SMS:
        return settings.twilio_messaging_service_sid or settings.twilio_from
    return "email"
