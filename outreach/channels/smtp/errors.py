"""SMTP failures sorted by the stage of the transaction they happened in, as a pure table.

The stage matters as much as the reply code. Until the final "." of the message data has
gone out, the server cannot have accepted anything, so losing the connection is safe to
retry. After it, and before the server's reply, the server may have queued the message:
retrying risks a duplicate (RFC 1047), so the outcome is ``unknown``.
"""

from __future__ import annotations

import enum
import re

from outreach.channels.base import DeliveryError, Effect


class Stage(enum.StrEnum):
    CONNECT = "connect"  # TCP, greeting, EHLO, STARTTLS, AUTH
    MAIL = "mail"  # MAIL FROM
    RCPT = "rcpt"  # RCPT TO
    DATA = "data"  # the DATA command, up to the 354 go-ahead
    TRANSFER = "transfer"  # writing the message, up to and including the final "."
    REPLY = "reply"  # waiting for the server's verdict on the message


# Reply codes at RCPT that mean "this mailbox does not exist / will not take mail".
RECIPIENT_REJECTED = frozenset({550, 551, 553})
AUTH_FAILED = frozenset({530, 534, 535})
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def enhanced_status(reply_text: str | bytes | None) -> str | None:
    """The RFC 3463 enhanced status code at the start of a reply text, e.g. "5.1.1".

    Only this is kept from a reply: the free text may quote the recipient's address.
    """
    if reply_text is None:
        return None
    text = reply_text.decode("utf-8", "replace") if isinstance(reply_text, bytes) else reply_text
    match = _ENHANCED.match(text)
    return match.group(1) if match else None


def classify_smtp_failure(stage: Stage, code: int | None, enhanced: str | None = None) -> DeliveryError:
    """A failed SMTP step as ``DeliveryError``.

    ``code`` is the server's reply code, or None when the connection was lost or timed out.
    """
    where = f"at {stage.value.upper()}"
    code_text = f"smtp-{code}" if code is not None else f"lost-{stage.value}"  # fits error_code(16)
    shown = f"{code}{' ' + enhanced if enhanced else ''}"
    if code is None:
        if stage is Stage.REPLY:
            return DeliveryError(
                "SMTP connection lost after the message was transmitted, before the server's "
                "answer; it may have been accepted",
                permanent=False,
                ambiguous=True,
                code=code_text,
            )
        return DeliveryError(
            f"SMTP connection failed or timed out {where}; nothing was accepted",
            permanent=False,
            code=code_text,
        )
    if stage is Stage.CONNECT and code in AUTH_FAILED:
        return DeliveryError(
            f"SMTP server refused our login ({shown}); check OUTREACH_SMTP_USERNAME/_PASSWORD",
            permanent=True,
            code=code_text,
        )
    # RFC 5321 §4.5.3.1.10: treat 552 at RCPT as the temporary 452 (mailbox full may clear).
    if 400 <= code < 500 or (stage is Stage.RCPT and code == 552):
        return DeliveryError(
            f"SMTP server deferred the message {where} ({shown})", permanent=False, code=code_text
        )
    if stage is Stage.RCPT and code in RECIPIENT_REJECTED:
        # 5.7.x is policy (relay denied, sender blocked): our problem, not the address's.
        if enhanced is not None and enhanced.startswith("5.7."):
            return DeliveryError(
                f"SMTP server refused the recipient by policy ({shown})", permanent=True, code=code_text
            )
        return DeliveryError(
            f"SMTP server rejected the recipient address ({shown})",
            permanent=True,
            code=code_text,
            effect=Effect.SUPPRESS_ADDRESS,
        )
    return DeliveryError(
        f"SMTP server rejected the message {where} ({shown})", permanent=True, code=code_text
    )
