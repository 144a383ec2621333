"""The rescue sweep's task: a crisis reply whose send task was lost goes back on the control
queue, through the real Celery app and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from outreach import runtime
from outreach.celeryapp import control_queue, make_celery
from outreach.config import Settings, load_settings
from outreach.db import transaction
from outreach.replies.inbound import URGENT_CLAIM_LEASE, claim_urgent, process_inbound
from tasks.delivery import rescue_stuck
from tests.support.replies import add_contact, form, store

NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)  # 11:00 at the clinic (Pacific): any hour would do


@pytest.fixture
def worker_settings(settings: Settings, redis_url: str) -> Iterator[Settings]:
    """A worker's settings, its runtime installed and its Celery app current, as `worker.py`
    makes them; the clock half a minute after the crisis text."""
    chosen = load_settings(
        database_url=settings.database_url,
        templates_dir=settings.templates_dir,
        broker_url=redis_url,
        redis_url=redis_url,
        celery_queue=f"rescue-{uuid.uuid4().hex[:8]}",
        twilio_api_base_url="http://127.0.0.1:9",  # a sandbox's address: no real Twilio
        oncall_sms=["+19255550199"],
        clock=NOW + URGENT_CLAIM_LEASE + timedelta(seconds=1),
    )
    make_celery(chosen)  # the current app, which the tasks' publishing goes through
    before = runtime._current
    runtime.install(chosen)
    yield chosen
    runtime._current = before
    client = redis.Redis.from_url(redis_url)
    client.delete(chosen.celery_queue, control_queue(chosen))
    client.close()


def test_the_rescue_puts_a_lost_crisis_reply_back_on_the_control_queue(
    worker_settings: Settings, session_factory: sessionmaker[Session], redis_url: str
) -> None:
    with session_factory() as session:
        add_contact(session)
        session.commit()
    result = store(session_factory, worker_settings, form("i want to end it all"), NOW)
    with transaction(session_factory) as tx:
        process_inbound(tx, worker_settings, result.inbound_id, NOW)
    with transaction(session_factory) as tx:
        claimed = claim_urgent(tx, worker_settings, result.inbound_id, NOW)  # its task then lost

    rescue_stuck()

    client = redis.Redis.from_url(redis_url)
    published = [json.loads(raw) for raw in client.lrange(control_queue(worker_settings), 0, -1)]
    client.close()
    assert [message["headers"]["task"] for message in published] == ["outreach.send_messages"]
    assert [message["headers"]["argsrepr"] for message in published] == [repr((claimed,))]
