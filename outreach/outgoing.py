"""Turn an outbox row into what a provider sends: rendered text, headers, attachments."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from jinja2 import TemplateError
from sqlalchemy.orm import Session

from outreach import calendar_invite, unsubscribe
from outreach.channels import Outgoing
from outreach.config import Settings
from outreach.models import Category, Channel, Contact, Message, MessageKind
from outreach.rendering import render_message

# Twilio's bounds for ValidityPeriod, in seconds.
VALIDITY_MIN, VALIDITY_MAX = 60, 36_000
NON_AUTOMATED_VALIDITY = 4 * 3600

# Mail a patient can unsubscribe from (CAN-SPAM, RFC 8058). Care mail (reminders) is transactional.
UNSUBSCRIBABLE = frozenset({Category.EDUCATION, Category.MARKETING})


class RenderFailure(Exception):
    """A template could not be rendered; the message fails rather than reach a patient half-blank."""


def validity_period(settings: Settings, message: Message, zone: ZoneInfo | None, now: datetime) -> int:
    """How long Twilio may hold an SMS in its queue: for automated messages, only until the
    recipient's window closes, so a queued message cannot drift into the night."""
    if message.kind != MessageKind.AUTOMATED or zone is None:
        return NON_AUTOMATED_VALIDITY
    local = now.astimezone(zone)
    closes = datetime.combine(local.date(), settings.send_window_end, tzinfo=zone)
    seconds = int((closes - now).total_seconds())
    return max(VALIDITY_MIN, min(VALIDITY_MAX, seconds))


def build(session: Session, settings: Settings, message: Message, to: str, now: datetime) -> Outgoing:
    correlation_id = message.correlation_id or uuid.uuid4().hex
    unsubscribe_link: str | None = None
    headers: dict[str, str] = {}
    if message.channel == Channel.EMAIL and message.category in UNSUBSCRIBABLE and message.contact_id:
        unsubscribe_link = unsubscribe.unsubscribe_url(settings, message.contact_id, message.category)
        headers = unsubscribe.list_unsubscribe_headers(settings, message.contact_id, message.category)
    if message.template:
        try:
            rendered = render_message(session, settings, message, unsubscribe_url=unsubscribe_link)
        except (TemplateError, KeyError, ValueError) as exc:
            raise RenderFailure(
                f"template {message.template!r} failed to render: {type(exc).__name__}"
            ) from None
        subject, text, html = rendered.subject, rendered.text, rendered.html
    else:
        subject = str((message.context or {}).get("subject") or "") or None
        text, html = message.body_override or "", None
    contact = session.get(Contact, message.contact_id) if message.contact_id else None
    zone = ZoneInfo(contact.timezone) if contact else None
    return Outgoing(
        message_id=message.id,
        channel=message.channel,
        category=message.category,
        to=to,
        body=text,
        correlation_id=correlation_id,
        subject=subject,
        html=html,
        headers=headers,
        attachments=calendar_invite.attachments_for(session, settings, message),
        validity_period=validity_period(settings, message, zone, now),
    )
