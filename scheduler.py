"""The beat schedule: entries only. Run exactly one beat; a second one is harmless but useless,
because every entry only ticks work that claims rows with exclusive, conditional updates."""

from __future__ import annotations

from typing import Any

from outreach.config import Settings

# The rescue and reconcile sweeps run at most this often apart, and no less often than the
# lease or wait they serve: a lost claim waits about one lease and one interval, whatever the
# lease. With the default leases (claim 300 s, send 120 s, reconcile after 60 s) these are the
# intervals; a deployment (or a test) with shorter leases gets proportionally quicker sweeps.
RESCUE_EVERY = 30.0
RECONCILE_EVERY = 60.0
# Never more often than this: a lease of 0.1 s must not make beat spin.
SHORTEST_SWEEP = 1.0

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
    "rescue-stuck": {
        "task": "outreach.rescue_stuck",
        "schedule": RESCUE_EVERY,
        "options": {"expires": RESCUE_EVERY},
    },
    # Ask the provider about "unknown" sends instead of resending blindly.
    "reconcile-unknown": {
        "task": "outreach.reconcile_unknown",
        "schedule": RECONCILE_EVERY,
        "options": {"expires": RECONCILE_EVERY},
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


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """``BEAT_SCHEDULE`` with the rescue and reconcile sweeps no further apart than the leases
    they act on (``OUTREACH_CLAIM_LEASE_SECONDS``, ``OUTREACH_SEND_LEASE_SECONDS``,
    ``OUTREACH_RECONCILE_AFTER_SECONDS``)."""
    rescue = max(SHORTEST_SWEEP, min(RESCUE_EVERY, settings.claim_lease_seconds, settings.send_lease_seconds))
    reconcile = max(SHORTEST_SWEEP, min(RECONCILE_EVERY, settings.reconcile_after_seconds))
    schedule = {name: dict(entry) for name, entry in BEAT_SCHEDULE.items()}
    for name, every in (("rescue-stuck", rescue), ("reconcile-unknown", reconcile)):
        schedule[name] |= {"schedule": every, "options": {"expires": every}}
    return schedule
