"""Turn an outbox row into what a provider sends: rendered text, headers, attachments."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from jinja2 import TemplateError
from sqlalchemy.orm import Session

from outreach.channels import Outgoing
from outreach.channels.twilio.errors import validity_seconds
from outreach.config import Settings
from outreach.contacts import unsubscribe
from outreach.content import invite
from outreach.content.rendering import render_message
from outreach.models import Category, Channel, Message

# How long Twilio may hold a message no send window applies to (replies, alerts).
UNWINDOWED_VALIDITY = timedelta(hours=4)

# Mail a patient can unsubscribe from (CAN-SPAM, RFC 8058). Care mail (reminders) is transactional.
UNSUBSCRIBABLE = frozenset({Category.EDUCATION, Category.MARKETING})


class RenderFailure(Exception):
    """A template could not be rendered; the message fails rather than reach a patient half-blank."""


def validity_period(message: Message, send_by: datetime | None, now: datetime) -> int:
    """How long Twilio may hold an SMS in its queue: until the window the message was allowed
    in closes (the campaign's own, in the recipient's zone: ``checks.Go.send_by``), and never
    past the message's expiry, so a queued message cannot drift into the night or past the
    appointment it was about."""
    deadline = send_by if send_by is not None else now + UNWINDOWED_VALIDITY
    return validity_seconds(now, deadline, message.not_after)


def build(
    session: Session,
    settings: Settings,
    message: Message,
    to: str,
    now: datetime,
    send_by: datetime | None = None,
) -> Outgoing:
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
        attachments=invite.attachments_for(session, settings, message),
        validity_period=validity_period(message, send_by, now),
    )
