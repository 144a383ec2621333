"""A stale send task racing a fresh claim of the same message (PostgreSQL: row locks).

When a worker dies mid-batch, its task comes back from the broker while the rescue sweep has
already handed its messages back to the schedule, and the dispatcher may claim one of them
again for a new task. The stale task's two reads (the contacts, then the messages) each see
their own snapshot, so it can find a message queued whose contact it did not lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings, load_settings
from outreach.db import make_engine, make_session_factory
from outreach.delivery.prepare import PreparedBatch, prepare
from outreach.delivery.send import send_message
from outreach.models import Message, MessageState
from outreach.outbox import transition
from tests.support.campaigns import TEMPLATES
from tests.support.factories import STAMPED_AT, make_contact, make_message
from tests.support.fakes import FakeProvider, fake_services
from tests.support.waiting import wait_for, waiting_for_a_lock

# 18:00 UTC = 10:00 in Los Angeles: inside the default sending window.
NOON_LA = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)


@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[Settings, sessionmaker[Session], Engine]]:
    engine = make_engine(pg_url)
    yield load_settings(database_url=pg_url, templates_dir=TEMPLATES), make_session_factory(engine), engine
    engine.dispose()


def test_a_message_claimed_again_while_a_stale_task_prepares_is_left_to_the_new_claim(
    pg: tuple[Settings, sessionmaker[Session], Engine],
) -> None:
    settings, factory, engine = pg
    due = NOON_LA - timedelta(minutes=1)
    with factory.begin() as session:
        first, second = make_contact(session), make_contact(session)
        ours = make_message(session, first, due_at=due)
        other = make_message(session, second, due_at=due)
        transition(session, ours.id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
        ids, first_id = [ours.id, other.id], first.id
    prepared: list[PreparedBatch] = []

    def stale_task() -> None:
        prepared.append(prepare(factory, settings, ids, lambda: NOON_LA))

    # Another transaction holds the first contact, so the stale task's contact lock waits with
    # its snapshot taken: `other` is still scheduled there. The dispatcher then claims it.
    with engine.connect() as holder:
        holder.execute(text("SELECT id FROM contacts WHERE id = :id FOR UPDATE"), {"id": first_id})
        task = threading.Thread(target=stale_task)
        task.start()
        wait_for(lambda: waiting_for_a_lock(engine), what="the stale task to wait for the contact lock")
        holder.execute(text("UPDATE messages SET state = 'queued' WHERE id = :id"), {"id": ids[1]})
        holder.commit()
    task.join(30)

    (batch,) = prepared
    assert [p.message_id for p in batch.ready] == [ids[0]]
    assert batch.outcomes == {ids[1]: "claimed again"}
    with factory() as session:
        claimed = session.get(Message, ids[1])
        assert claimed is not None and claimed.state == MessageState.QUEUED  # not cancelled
    # The new claim's task sends it.
    provider = FakeProvider()
    assert send_message(fake_services(settings, factory, provider, NOON_LA), ids[1]) == MessageState.SENT
    assert [o.message_id for o in provider.sent] == [ids[1]]
