"""Status-callback task: apply what the webhook stored (outreach/delivery/ingest.py)."""

from __future__ import annotations

from celery import shared_task

from outreach import runtime
from outreach.celeryapp import APPLY_STATUS
from outreach.delivery import ingest


# No acks_late needed: a run lost mid-way leaves its callbacks in the inbox for the next one.
@shared_task(name=APPLY_STATUS, ignore_result=True)
def apply_status(run_for: float = 0.9) -> int:
    services = runtime.current()
    return ingest.apply_pending(services.session_factory, services.clock, run_for=run_for)
