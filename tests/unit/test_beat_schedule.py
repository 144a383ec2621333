"""Beat's sweeps: no further apart than the leases they rescue."""

from __future__ import annotations

import scheduler
from outreach.config import load_settings


def test_the_default_leases_keep_the_default_sweeps() -> None:
    schedule = scheduler.beat_schedule(load_settings())
    assert schedule["rescue-stuck"]["schedule"] == 30.0
    assert schedule["reconcile-unknown"]["schedule"] == 60.0
    assert schedule == scheduler.BEAT_SCHEDULE


def test_short_leases_get_sweeps_as_short_but_never_under_a_second() -> None:
    short = load_settings(
        claim_lease_seconds=3, send_lease_seconds=5, reconcile_after_seconds=2,
        twilio_timeout_seconds=1, smtp_timeout_seconds=1,
    )
    schedule = scheduler.beat_schedule(short)
    # A claim lost with a 3 s lease is rescued within about 6 s, not 33.
    assert schedule["rescue-stuck"]["schedule"] == 3.0
    assert schedule["rescue-stuck"]["options"] == {"expires": 3.0}
    assert schedule["reconcile-unknown"]["schedule"] == 2.0
    tiny = load_settings(reconcile_after_seconds=0.2, twilio_timeout_seconds=0.1, smtp_timeout_seconds=0.1)
    assert scheduler.beat_schedule(tiny)["reconcile-unknown"]["schedule"] == scheduler.SHORTEST_SWEEP
    # The other entries are the fixed schedule's, and the fixed schedule is left as it was.
    assert schedule["dispatch-due"] == scheduler.BEAT_SCHEDULE["dispatch-due"]
    assert scheduler.BEAT_SCHEDULE["rescue-stuck"]["schedule"] == 30.0
