"""Message states as staff read them: plain words. Times come from ``outreach.timefmt``."""

from __future__ import annotations

STATE_WORDS = {
    "scheduled": "scheduled",
    "queued": "being sent",
    "sending": "being sent",
    "sent": "sent, awaiting delivery report",
    "delivered": "delivered",
    "undelivered": "not delivered",
    "failed": "failed",
    "cancelled": "cancelled",
    "skipped": "not sent",
    "expired": "too late to send",
    "unknown": "outcome unknown, being checked",
}


def state_words(state: str, reason: str | None = None) -> str:
    words = STATE_WORDS.get(state, state.replace("_", " "))
    return f"{words}: {reason}" if reason else words
