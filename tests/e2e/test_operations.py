"""Operations end to end: what /metrics shows after real worker processes have sent, received
and alerted, and logs from every process that carry ids, never patient data.

(The log check itself runs after every end-to-end test: ``running_system`` starts all
processes at DEBUG and fails the test if a patient's phone, email, name or text was printed.)
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from outreach.celeryapp import make_celery, replies_queue
from outreach.models import utcnow
from outreach.outbox import insert_messages
from tests.support.e2e import System, daytime_zone, environment, running_system, system_settings
from tests.support.factories import make_contact
from tests.support.processes import free_port, stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def _samples(system: System) -> dict[str, float]:
    response = httpx.get(f"{system.settings.public_base_url}/metrics", timeout=10)
    assert response.status_code == 200
    samples: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_gather_every_process_and_logs_name_ids_only(pg_url: str, tmp_path: Path) -> None:
    with running_system(pg_url, tmp_path) as system:
        control = system.sandbox.control
        with system.factory.begin() as session:
            patient = make_contact(session, timezone=daytime_zone())
            phone = patient.phone
            insert_messages(
                session,
                [
                    {
                        "idempotency_key": f"ops:{patient.id}",
                        "contact_id": patient.id,
                        "channel": "sms",
                        "category": "care",
                        "kind": "automated",
                        "body_override": "Your visit with the clinic is on Friday.",
                        "due_at": utcnow(),
                    }
                ],
                now=utcnow(),
            )
        assert phone is not None
        wait_for(lambda: control.accepts().count(phone) == 1, timeout=30, what="the reminder to be sent")
        control.reply(phone, "i want to end it all")
        wait_for(lambda: control.accepts().count(phone) == 2, timeout=30, what="the crisis reply")

        def counted() -> dict[str, float] | None:
            samples = _samples(system)
            delivered = samples.get('outreach_messages{channel="sms",state="delivered"}', 0)
            return samples if delivered >= 2 else None

        samples = wait_for(counted, timeout=30, interval=1.0, what="delivered messages in /metrics")
        assert samples is not None
        # Counted in the worker's pool processes, read by the web process.
        assert samples['outreach_provider_calls_total{channel="sms",outcome="accepted"}'] >= 2
        assert samples["outreach_scheduling_lag_seconds_count"] >= 2
        # Counted in the web process, which stores the reply.
        assert samples['outreach_inbound_replies_total{classification="crisis"}'] == 1
        assert samples["outreach_crisis_alerts_total"] == 1
        # Read from the database at scrape time.
        assert samples["outreach_crisis_unhandled"] == 1
        assert samples["outreach_broker_up"] == 1

        structured = [
            json.loads(line) for line in system.processes.log("worker1").splitlines() if line.startswith("{")
        ]
        assert {"time", "level", "logger", "message"} <= set(structured[0])
        assert any(line["logger"].startswith("celery") for line in structured)


def test_a_send_worker_started_with_dash_q_takes_the_replies_lane_first(pg_url: str, tmp_path: Path) -> None:
    """docker compose and the README start send workers as `celery -A worker worker -Q outreach`:
    the worker itself adds the replies lane, ahead of the send queue, or the staff answers the
    dispatcher puts there would wait for a worker that never comes (worker.py)."""
    # Aimed at this machine (nothing listens there: the worker only has to start).
    local = f"http://127.0.0.1:{free_port()}"
    settings = system_settings(pg_url, free_port(), twilio_api_base_url=local, smtp_host="127.0.0.1")
    with stack(environment(settings), tmp_path) as processes:
        processes.start_worker("sender", concurrency=1, dash_q=settings.celery_queue)
        inspect = make_celery(settings).control.inspect(timeout=2)

        def ours() -> list[str] | None:
            # A broadcast reaches every worker on the broker: another test's stack beside this
            # one answers too (the fault tests share its Redis database). Ours takes our queue.
            for queues in (inspect.active_queues() or {}).values():
                names = [queue["name"] for queue in queues]
                if settings.celery_queue in names:
                    return names
            return None

        taken = wait_for(ours, timeout=30, what="the worker to say which queues it takes")
    assert taken == [replies_queue(settings), settings.celery_queue]
