"""Campaign tasks: one outreach call each."""

from __future__ import annotations

from celery import shared_task

from outreach import runtime
from outreach.campaigns import lifecycle

COMPLETE_ENROLLMENTS = "outreach.complete_enrollments"


@shared_task(name=COMPLETE_ENROLLMENTS, ignore_result=True)
def complete_enrollments() -> None:
    services = runtime.current()
    with services.session_factory() as session, session.begin():
        lifecycle.complete_finished(session, services.clock())
