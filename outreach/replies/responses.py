"""Outbox rows for what we send because a patient wrote: system replies and on-call alerts.

Nothing is sent from here. Rows are inserted with ``outbox.insert_messages`` (idempotent on
their keys, so a re-run task adds nothing) and dispatch renders and sends them.

On-call alerts carry no patient data at all (decided for this project): the inbox item number,
its link, and whether the patient must be phoned because no SMS reply could go. Never the
patient's words, name or number: alerts travel to personal phones and mailboxes; the clinician
opens the link (staff-only) to read the message and get the number. Their wording lives in the
templates ``sms/system/oncall_alert`` and ``email/system/oncall_alert``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import outbox
from outreach.config import Settings
from outreach.models import Category, Channel, Contact, InboundMessage, InboxItem, Message, MessageKind

HELP_TEMPLATE = "sms/system/help"
OPT_OUT_CONFIRMATION_TEMPLATE = "sms/system/opt_out_confirmation"
OPT_IN_CONFIRMATION_TEMPLATE = "sms/system/opt_in_confirmation"
CRISIS_REPLY_TEMPLATE = "sms/system/crisis_reply"
ACKNOWLEDGEMENT_TEMPLATE = "sms/system/acknowledgement"
# The FCC presumes a single opt-out confirmation compliant only if sent within five minutes.
OPT_OUT_CONFIRMATION_WINDOW = timedelta(minutes=5)
ALERT_TEMPLATES = {Channel.SMS: "sms/system/oncall_alert", Channel.EMAIL: "email/system/oncall_alert"}


CRISIS_REPLY = "crisis_reply"
_REPLY_KEY = "inbound"
_ALERT = "alert"


def reply_key(inbound_id: int, purpose: str) -> str:
    return f"{_REPLY_KEY}:{inbound_id}:{purpose}"


def _alert_key(inbound_id: int, channel: str, index: int) -> str:
    # The index, not the address, in the key: keys show up in logs and listings.
    return reply_key(inbound_id, f"{_ALERT}:{channel}:{index}")


def is_urgent_key(key: str) -> bool:
    """Whether a row with this key is a crisis reply or an on-call alert (``urgent_keys``)."""
    kind, _, rest = key.partition(":")
    purpose = rest.partition(":")[2]
    return kind == _REPLY_KEY and (purpose == CRISIS_REPLY or purpose.startswith(f"{_ALERT}:"))


def urgent_keys(settings: Settings, inbound_id: int) -> list[str]:
    """The keys of the rows a crisis text makes: the reply to the patient and the alerts.

    Looked up by these exact keys (the unique index), never by prefix: a LIKE on the key
    cannot use that index under PostgreSQL's usual collations. Other replies (HELP, the
    answers to keywords and to "1"/"2") go the usual way, in due order, so a staff reply
    written a moment later never overtakes them."""
    alerts = [
        _alert_key(inbound_id, channel, index)
        for channel, addresses in _oncall(settings)
        for index in range(len(addresses))
    ]
    return [reply_key(inbound_id, CRISIS_REPLY), *alerts]


def _oncall(settings: Settings) -> list[tuple[Channel, Sequence[str]]]:
    return [(Channel.SMS, settings.oncall_sms), (Channel.EMAIL, settings.oncall_email)]


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
        now=now,
    )
    return key


def acknowledged_since(session: Session, phone: str, since: datetime) -> bool:
    """Whether this number was sent an acknowledgement due at or after ``since``."""
    return (
        session.scalar(
            select(Message.id)
            .where(
                Message.template == ACKNOWLEDGEMENT_TEMPLATE,
                Message.to_override == phone,
                Message.due_at >= since,
            )
            .limit(1)
        )
        is not None
    )


def insert_alerts(
    session: Session,
    settings: Settings,
    inbound: InboundMessage,
    item: InboxItem,
    reply_sent: bool,
    now: datetime,
) -> list[str]:
    """One alert per configured on-call phone and mailbox; returns the channels used."""
    context: dict[str, object] = {
        "inbound_id": inbound.id,
        "inbox_item_id": item.id,
        "inbox_url": f"{settings.public_base_url.rstrip('/')}/inbox/{item.id}",
        "patient_opted_out": not reply_sent,
    }
    rows: list[dict[str, object]] = []
    for channel, addresses in _oncall(settings):
        rows.extend(
            {
                "idempotency_key": _alert_key(inbound.id, channel, index),
                "contact_id": None,
                "channel": channel,
                "category": Category.CARE,
                "kind": MessageKind.ALERT,
                "template": ALERT_TEMPLATES[channel],
                "context": context,
                "to_override": address,
                "due_at": now,
            }
            for index, address in enumerate(addresses)
        )
    outbox.insert_messages(session, rows, now=now)
    return [f"alert:{row['channel']}" for row in rows]
