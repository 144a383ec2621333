"""Email unsubscribe: signed links per contact and category, and what using one does.

The token travels in a URL, so it carries ids only (contact id and category) plus an HMAC
signature made with ``Settings.secret_key`` and a purpose-specific salt; no name, no address.
It never expires: CAN-SPAM requires the link to keep working for at least 30 days, and an old
email's link should still work years later. Tampering with either part breaks the signature.
After a key rotation, links signed with a key listed in ``secret_key_fallbacks`` still work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import outbox
from outreach.config import Settings
from outreach.contacts import consent
from outreach.errors import OutreachError
from outreach.models import (
    Campaign,
    Category,
    Channel,
    ConsentSource,
    Enrollment,
)

log = logging.getLogger(__name__)

# Distinct salt: a token signed for another purpose with the same key never passes here.
TOKEN_SALT = "outreach.unsubscribe.v1"  # noqa: S105 (a salt, not a secret)
# Ids are 64-bit integers in the database.
MAX_ID = 2**63
REASON = "the contact unsubscribed from this email category"


class BadUnsubscribeToken(OutreachError):
    """The link was altered, truncated or signed with another key."""


@dataclass(frozen=True)
class UnsubscribeTarget:
    contact_id: int
    category: str


@dataclass(frozen=True)
class UnsubscribeResult:
    contact_id: int
    category: str
    # False when the contact had already unsubscribed (or no longer exists): nothing changed.
    changed: bool
    cancelled_messages: int


def _serializer(settings: Settings) -> URLSafeSerializer:
    # itsdangerous signs with the last key and accepts a signature by any of them: the current
    # key last, the fallbacks of a rotation before it.
    keys = [key.get_secret_value() for key in (*settings.secret_key_fallbacks, settings.secret_key)]
    return URLSafeSerializer(keys, salt=TOKEN_SALT)


def make_token(settings: Settings, contact_id: int, category: Category | str) -> str:
    return _serializer(settings).dumps([contact_id, str(Category(category))])


def read_token(settings: Settings, token: str) -> UnsubscribeTarget:
    """The contact and category a token names. Raises ``BadUnsubscribeToken``."""
    try:
        payload = _serializer(settings).loads(token)
    except BadSignature:
        raise BadUnsubscribeToken("this unsubscribe link is not valid (altered or incomplete)") from None
    if (
        not isinstance(payload, list)
        or len(payload) != 2
        or not isinstance(payload[0], int)
        or isinstance(payload[0], bool)
        # A signed id the database could not hold (only a leaked key could sign one) is junk too.
        or not 0 < payload[0] < MAX_ID
        or payload[1] not in {str(c) for c in Category}
    ):
        raise BadUnsubscribeToken("this unsubscribe link is not valid (unexpected content)")
    return UnsubscribeTarget(contact_id=payload[0], category=payload[1])


def unsubscribe_url(settings: Settings, contact_id: int, category: Category | str) -> str:
    """The https link for the email footer and the List-Unsubscribe header."""
    base = settings.public_base_url.rstrip("/")
    return f"{base}/unsubscribe/{make_token(settings, contact_id, category)}"


def unsubscribe_mailto(settings: Settings, contact_id: int, category: Category | str) -> str:
    """The mailto: alternative for List-Unsubscribe. Mail to it reaches the clinic's mailbox
    (``unsubscribe_mailbox``, else ``clinic_email``) with the token as subject, for staff to act on."""
    mailbox = settings.unsubscribe_mailbox or settings.clinic_email
    token = make_token(settings, contact_id, category)
    return f"mailto:{mailbox}?subject={quote('unsubscribe ' + token)}"


def list_unsubscribe_headers(settings: Settings, contact_id: int, category: Category | str) -> dict[str, str]:
    """RFC 8058 headers for an education or marketing email. Keep each on one line when
    sending: folding List-Unsubscribe has broken DKIM on some relays."""
    url = unsubscribe_url(settings, contact_id, category)
    mailto = unsubscribe_mailto(settings, contact_id, category)
    return {
        "List-Unsubscribe": f"<{url}>, <{mailto}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def unsubscribe(
    session: Session,
    settings: Settings,
    token: str,
    now: datetime,
    source: ConsentSource = ConsentSource.UNSUBSCRIBE_LINK,
    *,
    how: str = "unsubscribe page",
) -> UnsubscribeResult:
    """Revoke email consent for the token's category, cancel pending email in it, and stop the
    email steps of enrollments in campaigns of that category. Idempotent."""
    target = read_token(settings, token)
    contacts = outbox.lock_contacts(session, [target.contact_id])
    if not contacts:
        # Deleted since the email went out: nothing can be sent to them anyway.
        return UnsubscribeResult(target.contact_id, target.category, changed=False, cancelled_messages=0)
    changed = consent.state_of(session, target.contact_id, Channel.EMAIL, target.category) != "revoked"
    if changed:
        consent.revoke(
            session,
            target.contact_id,
            Channel.EMAIL,
            [target.category],
            consent.Evidence(
                source=source,
                wording=f"unsubscribed from {target.category} email via {how}",
                recorded_by="patient",
                occurred_at=now,
            ),
        )
    cancelled = outbox.cancel_pending(
        session, REASON, contact_id=target.contact_id, channel=Channel.EMAIL, categories=[target.category],
        now=now,
    )
    enrollments = session.scalars(
        select(Enrollment)
        .join(Campaign, Campaign.id == Enrollment.campaign_id)
        .where(Enrollment.contact_id == target.contact_id, Campaign.category == target.category)
    )
    for enrollment in enrollments:
        if Channel.EMAIL not in (enrollment.stopped_channels or []):
            enrollment.stopped_channels = [*(enrollment.stopped_channels or []), str(Channel.EMAIL)]
    log.info("contact %s unsubscribed from %s email (%s)", target.contact_id, target.category, how)
    return UnsubscribeResult(target.contact_id, target.category, changed, cancelled)
