"""Retention task: one outreach call (outreach/ops/retention.py says what is cleared and why)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task

from outreach import runtime
from outreach.ops import retention

log = logging.getLogger(__name__)


@shared_task(name="outreach.clear_old_content", ignore_result=True)
def clear_old_content() -> None:
    services = runtime.current()
    cleared = retention.clear_old_content(
        services.session_factory, services.clock(), services.settings.retention_days
    )
    log.info(
        "retention: cleared the content of %d messages, %d replies, %d inbox items",
        cleared.messages,
        cleared.inbound,
        cleared.inbox_items,
    )
    idle = timedelta(minutes=services.settings.session_idle_minutes)
    forgotten = retention.forget_staff_traces(services.session_factory, services.clock(), idle)
    log.info(
        "retention: deleted %d old failed sign-ins and %d ended staff sessions",
        forgotten.login_failures,
        forgotten.web_sessions,
    )
