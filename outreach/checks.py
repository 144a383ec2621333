"""The send-time re-check: is this message still wanted, allowed, and addressed right *now*?

Everything here may have changed since the message was scheduled: consent, suppression,
the enrollment, the appointment, the contact's crisis pause, the clock. ``decide`` returns
one of three answers: go (with the address and sender), hold until a later instant (window,
pause, cap), or stop in a terminal state with a reason a person can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import consent, inbox
from outreach.config import Settings
from outreach.enrollment import PAUSED_REASON
from outreach.models import (
    Appointment,
    AppointmentStatus,
    Campaign,
    Channel,
    Contact,
    Enrollment,
    EnrollmentState,
    Message,
    MessageKind,
    MessageState,
    Suppression,
)
from outreach.sendpolicy import cap_deferral, policy_for

# How often a message held for a crisis pause looks again (staff may clear the pause any time).
PAUSE_RECHECK = timedelta(hours=1)


@dataclass(frozen=True)
class Go:
    to: str
    sender: str


@dataclass(frozen=True)
class Hold:
    until: datetime
    reason: str


@dataclass(frozen=True)
class Stop:
    state: MessageState
    reason: str


Decision = Go | Hold | Stop


def decide(session: Session, settings: Settings, message: Message, now: datetime) -> Decision:
    if message.not_after is not None and now > message.not_after:
        return Stop(MessageState.EXPIRED, "its time passed before it could be sent")
    sender = sender_for(settings, message.channel)
    if message.kind == MessageKind.ALERT:
        if not message.to_override:
            return Stop(MessageState.FAILED, "alert has no recipient")
        return Go(message.to_override, sender)
    contact = session.get(Contact, message.contact_id) if message.contact_id is not None else None
    if contact is None:
        if message.kind == MessageKind.SYSTEM and message.to_override and message.contact_id is None:
            # A reply to a number we have no contact for (HELP, a crisis reply to a stranger).
            return _suppression_stop(session, message.channel, message.to_override) or Go(
                message.to_override, sender
            )
        return Stop(MessageState.CANCELLED, "the contact no longer exists")
    stopped = still_wanted(session, message)
    if stopped is not None:
        return stopped
    problem = consent_problem(session, message)
    if problem:
        return Stop(MessageState.SKIPPED, problem)
    to = message.to_override or (contact.phone if message.channel == Channel.SMS else contact.email)
    if not to:
        return Stop(
            MessageState.SKIPPED,
            f"the contact has no {'phone number' if message.channel == Channel.SMS else 'email address'}",
        )
    suppressed = _suppression_stop(session, message.channel, to)
    if suppressed:
        return suppressed
    timing = _timing(session, settings, message, contact, now)
    if timing is not None:
        return timing
    return Go(to, sender)


def _suppression_stop(session: Session, channel: str, address: str) -> Stop | None:
    reason = session.scalar(
        select(Suppression.reason).where(Suppression.channel == channel, Suppression.address == address)
    )
    return Stop(MessageState.SKIPPED, f"address suppressed: {reason}") if reason else None


def still_wanted(session: Session, message: Message) -> Stop | None:
    """Is the campaign or appointment behind this message still as it was? (Re-checked just
    before the provider call too: a reschedule may commit between prepare and call.)"""
    if message.enrollment_id is not None:
        enrollment = session.get(Enrollment, message.enrollment_id)
        if enrollment is None or enrollment.state in (EnrollmentState.UNENROLLED, EnrollmentState.COMPLETED):
            return Stop(MessageState.CANCELLED, "the contact left the campaign")
        if enrollment.state == EnrollmentState.PAUSED:
            # The same words as pause itself: resume re-creates exactly these.
            return Stop(MessageState.CANCELLED, PAUSED_REASON)
        if message.channel in (enrollment.stopped_channels or []):
            return Stop(MessageState.CANCELLED, f"{message.channel} steps stopped for this enrollment")
    if message.appointment_id is not None:
        appointment = session.get(Appointment, message.appointment_id)
        if appointment is None or appointment.status == AppointmentStatus.CANCELLED:
            return Stop(MessageState.CANCELLED, "the appointment was cancelled")
        if message.appointment_version is not None and appointment.version != message.appointment_version:
            return Stop(MessageState.CANCELLED, "the appointment was rescheduled")
    return None


def consent_problem(session: Session, message: Message) -> str | None:
    """Why this patient must not get this message now, or None.

    Automated messages need consent for their exact channel and category. Replies to the
    patient (HELP, crisis reply, staff conversation) need only that the patient has not
    opted out of the channel; an opt-out confirmation is the one message allowed after it.
    """
    if message.contact_id is None or message.kind == MessageKind.ALERT:
        return None
    if message.kind == MessageKind.AUTOMATED:
        if consent.has_consent(session, message.contact_id, message.channel, message.category):
            return None
        return f"no {message.category} consent for {message.channel}"
    if (message.context or {}).get("after_opt_out"):
        return None
    if consent.state_of(session, message.contact_id, message.channel, "care") == "revoked":
        return f"the contact opted out of {message.channel}"
    return None


def _timing(
    session: Session, settings: Settings, message: Message, contact: Contact, now: datetime
) -> Decision | None:
    if message.kind == MessageKind.SYSTEM:
        return None  # HELP, crisis and opt-out replies go at once, at any hour
    if message.kind == MessageKind.AUTOMATED and contact.automation_paused_at is not None:
        return Hold(now + PAUSE_RECHECK, "automation paused for this contact until staff clear it")
    zone = ZoneInfo(contact.timezone)
    campaign = _campaign_of(session, message)
    policy = policy_for(session, settings, campaign)
    if message.kind == MessageKind.CONVERSATIONAL and _conversation_open(session, settings, contact, now):
        return None
    if not policy.allows(now, zone):
        opening = policy.next_opening(now, zone)
        if message.not_after is not None and opening > message.not_after:
            return Stop(
                MessageState.SKIPPED, "the allowed window opens only after the message stops being useful"
            )
        return Hold(opening, "outside the allowed sending window; moved to the next opening")
    if message.kind == MessageKind.AUTOMATED:
        later = cap_deferral(policy, session, settings, message, zone, now)
        if later is not None:
            return Hold(later, "frequency cap reached; moved to the next allowed day")
    return None


def _campaign_of(session: Session, message: Message) -> Campaign | None:
    if message.enrollment_id is None:
        return None
    return session.scalar(
        select(Campaign)
        .join(Enrollment, Enrollment.campaign_id == Campaign.id)
        .where(Enrollment.id == message.enrollment_id)
    )


def _conversation_open(session: Session, settings: Settings, contact: Contact, now: datetime) -> bool:
    """Staff replies may go outside the window shortly after the patient's own message."""
    if not contact.phone:
        return False
    last = inbox.last_inbound_at(session, contact.phone)
    return inbox.conversational_window_open(last, now, settings.conversational_window_hours)


def sender_for(settings: Settings, channel: str) -> str:
    if channel == Channel.SMS:
        return settings.twilio_messaging_service_sid or settings.twilio_from
    return "email"
