"""The beat schedule: entries only. Run exactly one beat; a second one is harmless but useless,
because every entry only ticks work that claims rows with exclusive, conditional updates."""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Claim due messages and enqueue sends; each run keeps polling ~0.9 s for low lag.
    # Expires so a backlog of ticks after an outage collapses instead of piling up.
    "dispatch-due": {"task": "outreach.dispatch_due", "schedule": 1.0, "options": {"expires": 2.0}},
    # Apply the status callbacks the webhook stored to their messages (delivered, failed...).
    "apply-status-events": {
        "task": "outreach.apply_status_events",
        "schedule": 1.0,
        "options": {"expires": 2.0},
    },
    # Return lost claims to the schedule and turn sends stuck past their lease into "unknown".
    "rescue-stuck": {"task": "outreach.rescue_stuck", "schedule": 30.0, "options": {"expires": 30.0}},
    # Ask the provider about "unknown" sends instead of resending blindly.
    "reconcile-unknown": {
        "task": "outreach.reconcile_unknown",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    # Process inbound replies whose task was lost (the webhook stored them; enqueue failed).
    "inbound-sweep": {
        "task": "outreach.process_unprocessed_inbound",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    # Mark enrollments whose messages are all done as completed (nothing waits on it but the
    # campaign counts and re-enrolling, which checks for itself).
    "complete-enrollments": {
        "task": "outreach.complete_enrollments",
        "schedule": 300.0,
        "options": {"expires": 300.0},
    },
    # Count each day's sends once for the dashboard; today and the two days before it again.
    "delivery-days": {
        "task": "outreach.count_delivery_days",
        "schedule": 600.0,
        "options": {"expires": 600.0},
    },
    # Clear texts older than OUTREACH_RETENTION_DAYS (minimum necessary); hourly keeps each run small.
    "retention": {"task": "outreach.clear_old_content", "schedule": 3600.0, "options": {"expires": 3600.0}},
}
