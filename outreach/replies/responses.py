"""Outbox rows for what we send because a patient wrote: system replies and on-call alerts.

Nothing is sent from here. Rows are inserted with ``outbox.insert_messages`` (idempotent on
their keys, so a re-run task adds nothing) and dispatch renders and sends them.

Alert content is deliberately thin (PHI minimum, decided for this project): the contact id,
first name, last four digits of the phone, what to do, and a link to the inbox item. Never the
patient's words, never the full number: alerts travel to personal phones and mailboxes; the
clinician opens the link (authenticated) to read the message and get the number.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from outreach import outbox
from outreach.config import Settings
from outreach.models import Category, Channel, Contact, InboundMessage, InboxItem, MessageKind

HELP_TEMPLATE = "sms/system/help"
OPT_OUT_CONFIRMATION_TEMPLATE = "sms/system/opt_out_confirmation"
OPT_IN_CONFIRMATION_TEMPLATE = "sms/system/opt_in_confirmation"
CRISIS_REPLY_TEMPLATE = "sms/system/crisis_reply"
# The FCC presumes a single opt-out confirmation compliant only if sent within five minutes.
OPT_OUT_CONFIRMATION_WINDOW = timedelta(minutes=5)
ALERT_SUBJECT = "URGENT: a patient reply needs a clinician now"


def reply_key(inbound_id: int, purpose: str) -> str:
    return f"inbound:{inbound_id}:{purpose}"


def insert_reply(
    session: Session,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    template: str,
    purpose: str,
    now: datetime,
    *,
    context: dict[str, object] | None = None,
    not_after: datetime | None = None,
) -> str:
    """One system SMS back to the number that wrote, whatever the hour. Returns its key.

    The reply goes to the number, not to each contact sharing it: ``to_override`` is the
    sender; ``contact_id`` is the (lowest-id) contact, or None for an unknown sender.
    """
    key = reply_key(inbound.id, purpose)
    outbox.insert_messages(
        session,
        [
            {
                "idempotency_key": key,
                "contact_id": min(c.id for c in contacts) if contacts else None,
                "channel": Channel.SMS,
                "category": Category.CARE,
                "kind": MessageKind.SYSTEM,
                "template": template,
                "context": {"inbound_id": inbound.id, **(context or {})},
                "to_override": inbound.from_address,
                "due_at": now,
                "not_after": not_after,
            }
        ],
    )
    return key


def alert_text(
    settings: Settings,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    item: InboxItem,
    reply_sent: bool,
) -> str:
    last4 = "".join(ch for ch in inbound.from_address if ch.isdigit())[-4:] or "?"
    if not contacts:
        who = f"an unknown sender (phone ending {last4})"
    else:
        names = ", ".join(f"#{c.id} {c.first_name}".rstrip() for c in contacts)
        who = f"contact {names} (phone ending {last4})"
    if reply_sent:
        action = "The 988/911 auto-reply has been sent. Follow up now."
    else:
        action = "NO auto-reply could be sent (opted out of SMS): PHONE THEM NOW."
    link = f"{settings.public_base_url.rstrip('/')}/inbox/{item.id}"
    return (
        f"URGENT {settings.clinic_display_name}: crisis language in a text from {who}. "
        f"{action} Inbox item {item.id}: {link}"
    )


def insert_alerts(
    session: Session,
    settings: Settings,
    inbound: InboundMessage,
    contacts: Sequence[Contact],
    item: InboxItem,
    reply_sent: bool,
    now: datetime,
) -> list[str]:
    """One alert per configured on-call phone and mailbox; returns the channels used."""
    text = alert_text(settings, inbound, contacts, item, reply_sent)
    email_text = (
        text + "\n\nThe patient's words are left out of this alert on purpose; "
        "open the inbox item to read them."
    )
    rows: list[dict[str, object]] = []
    for index, address in enumerate(settings.oncall_sms):
        rows.append(_alert_row(inbound, item, Channel.SMS, index, address, text, None, now))
    for index, address in enumerate(settings.oncall_email):
        rows.append(_alert_row(inbound, item, Channel.EMAIL, index, address, email_text, ALERT_SUBJECT, now))
    outbox.insert_messages(session, rows)
    return [f"alert:{row['channel']}" for row in rows]


def _alert_row(
    inbound: InboundMessage,
    item: InboxItem,
    channel: Channel,
    index: int,
    address: str,
    text: str,
    subject: str | None,
    now: datetime,
) -> dict[str, object]:
    return {
        # The index, not the address, in the key: keys show up in logs and listings.
        "idempotency_key": reply_key(inbound.id, f"alert:{channel}:{index}"),
        "contact_id": None,
        "channel": channel,
        "category": Category.CARE,
        "kind": MessageKind.ALERT,
        "template": None,
        "body_override": text,
        "subject": subject,
        "context": {"inbound_id": inbound.id, "inbox_item_id": item.id},
        "to_override": address,
        "due_at": now,
    }
