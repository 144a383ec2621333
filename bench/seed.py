"""Rows the benches set up straight in SQL (not measured)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg


def grant_consent(conn: psycopg.Connection[Any], channels: Sequence[str], categories: Sequence[str]) -> None:
    """Consent granted by staff to every contact on each channel for each category, as the
    ledger records it: an event and the current state pointing at it."""
    for channel in channels:
        for category in categories:
            conn.execute(
                """INSERT INTO consent_events (contact_id, channel, category, state, source, evidence,
                                               recorded_by, occurred_at)
                   SELECT id, %(channel)s, %(category)s, 'granted', 'staff', 'bench', 'bench', now()
                   FROM contacts""",
                {"channel": channel, "category": category},
            )
    conn.execute(
        """INSERT INTO consents (contact_id, channel, category, state, updated_at, event_id)
           SELECT contact_id, channel, category, state, occurred_at, id FROM consent_events"""
    )
