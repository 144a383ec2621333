"""Retention task: one outreach call (outreach/ops/retention.py says what is cleared and why)."""

from __future__ import annotations

import logging

from celery import shared_task

from outreach import runtime
from outreach.models import utcnow
from outreach.ops import retention

log = logging.getLogger(__name__)


@shared_task(name="outreach.clear_old_content", ignore_result=True)
def clear_old_content() -> None:
    services = runtime.current()
    cleared = retention.clear_old_content(
        services.session_factory, utcnow(), services.settings.retention_days
    )
    log.info(
        "retention: cleared the content of %d messages, %d replies, %d inbox items",
        cleared.messages,
        cleared.inbound,
        cleared.inbox_items,
    )
