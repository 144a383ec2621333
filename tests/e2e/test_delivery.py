"""End to end: real web, Celery worker and beat processes, Redis, PostgreSQL and the sandbox.

What a clinic would see: a campaign step reaches the patient's phone and is logged as
delivered; each provider failure ends in the state staff need to act on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from outreach.campaigns import sync
from outreach.campaigns.enroll import enroll
from outreach.contacts import consent
from outreach.models import Message, MessageState, Suppression, utcnow
from outreach.outbox import insert_messages
from tests.support.e2e import System, daytime_zone, running_system
from tests.support.factories import make_contact
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(pg_url: str, tmp_path: Path) -> Iterator[System]:
    with running_system(pg_url, tmp_path) as running:
        yield running


def test_campaign_steps_reach_the_patient_and_are_logged_delivered(system: System) -> None:
    now = utcnow()
    with system.factory.begin() as session:
        sync.sync(session, system.settings, now)
        reader = make_contact(session, timezone=daytime_zone())
        texter = make_contact(session, timezone=daytime_zone())
        ids = {"reader": reader.id, "texter": texter.id}
        phone, email = texter.phone, reader.email
    system.clear_closures()
    with system.factory.begin() as session:
        enroll(session, system.settings, "ketamine-education", list(ids.values()), now=now)
        # Time travel on one row: bring the texter's SMS nudge (day 10) forward to now. (The
        # texter is another contact: the education cap allows one message a day per patient.)
        nudge_id = session.scalar(
            select(Message.id).where(Message.contact_id == ids["texter"], Message.step_key == "nudge")
        )
        assert nudge_id is not None
        session.execute(update(Message).where(Message.id == nudge_id).values(due_at=utcnow()))
        # And the texter's own day-0 step a month on: due now too, it raced the nudge for the
        # day's one education message, and when it went first (a busy machine) the cap moved
        # the nudge to tomorrow, as it should.
        session.execute(
            update(Message)
            .where(Message.contact_id == ids["texter"], Message.id != nudge_id)
            .values(due_at=now + timedelta(days=30))
        )
        first_id = session.scalar(
            select(Message.id).where(Message.contact_id == ids["reader"], Message.step_key == "what-it-is")
        )
        assert first_id is not None

    nudge = system.wait_state(nudge_id, MessageState.DELIVERED)
    assert [e.status for e in nudge.events][-1] == "delivered"
    assert [a.outcome for a in nudge.attempts_log] == ["accepted"]
    assert phone is not None and system.sandbox.control.accepts().count(phone) == 1

    first = system.wait_state(first_id, MessageState.SENT)
    assert email is not None
    mail = wait_for(
        lambda: [m for m in system.sandbox.control.mail() if email in (m.to or "")], what="the email"
    )
    assert mail[0].header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert first.provider_id


def _system_sms(system: System, contact_id: int, body: str) -> int:
    with system.factory.begin() as session:
        insert_messages(
            session,
            [
                {
                    "idempotency_key": f"e2e:{body}",
                    "contact_id": contact_id,
                    "channel": "sms",
                    "category": "care",
                    "kind": "system",
                    "body_override": body,
                    "due_at": utcnow(),
                }
            ],
            now=utcnow(),
        )
        message_id = session.scalar(select(Message.id).where(Message.idempotency_key == f"e2e:{body}"))
        assert message_id is not None
        return message_id


def test_each_injected_failure_ends_in_the_right_state(system: System) -> None:
    control = system.sandbox.control
    phones: dict[str, str] = {}
    contacts: dict[str, int] = {}
    with system.factory.begin() as session:
        for case in (
            "invalid",
            "stopped",
            "unreachable",
            "unknown_handset",
            "throttled",
            "server_error",
            "hang",
        ):
            contact = make_contact(session, timezone=daytime_zone())
            assert contact.phone is not None
            phones[case], contacts[case] = contact.phone, contact.id
    control.inject("error", code=21211, to=phones["invalid"])
    control.inject("error", code=21610, to=phones["stopped"])
    control.inject("delivery", code=30003, to=phones["unreachable"], status="undelivered")
    control.inject("delivery", code=30005, to=phones["unknown_handset"], status="undelivered")
    control.inject("error", code=20429, to=phones["throttled"], count=1)
    control.inject("error", code=20500, to=phones["server_error"], count=1)
    control.inject("hang", to=phones["hang"], count=1, seconds=5)
    ids = {case: _system_sms(system, contacts[case], f"Failure case {case}") for case in phones}

    assert system.wait_state(ids["invalid"], MessageState.FAILED).error_code == "21211"
    with system.factory() as session:
        assert session.scalar(select(Suppression.reason).where(Suppression.address == phones["invalid"]))

    system.wait_state(ids["stopped"], MessageState.FAILED)
    with system.factory() as session:
        assert consent.state_of(session, contacts["stopped"], "sms", "care") == "revoked"

    system.wait_state(ids["unreachable"], MessageState.UNDELIVERED)
    with system.factory() as session:
        resend = session.scalar(
            select(Message).where(Message.idempotency_key == "e2e:Failure case unreachable:resend")
        )
        assert resend is not None and resend.state == MessageState.SCHEDULED
        assert resend.due_at > utcnow() + timedelta(minutes=30), "one re-send, hours later"

    system.wait_state(ids["unknown_handset"], MessageState.UNDELIVERED)
    with system.factory() as session:
        assert session.scalar(select(Suppression.id).where(Suppression.address == phones["unknown_handset"]))

    throttled = system.wait_state(ids["throttled"], MessageState.DELIVERED)
    assert [a.outcome for a in throttled.attempts_log] == ["retry", "accepted"]
    server_error = system.wait_state(ids["server_error"], MessageState.DELIVERED)
    assert [a.outcome for a in server_error.attempts_log] == ["retry", "accepted"]

    # The hung request was accepted by the sandbox but never answered: unknown, then the
    # reconcile sweep finds it at the provider instead of sending it again.
    system.wait_state(ids["hang"], MessageState.UNKNOWN, MessageState.SENT, MessageState.DELIVERED)

    def reconciled() -> bool:
        system.run_task("outreach.reconcile_unknown")
        return system.message(ids["hang"]).state in (MessageState.SENT, MessageState.DELIVERED)

    wait_for(reconciled, timeout=30, interval=1.0, what="the hung send to be reconciled")
    assert control.accepts().count(phones["hang"]) == 1
    assert control.accepts().duplicates == []
