"""The live gauges /metrics reads from the database, and the lag the claim records, with fixed
instants on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from outreach.delivery.claim import claim_due
from outreach.models import InboxItem, InboxState, MessageState
from outreach.ops.metrics import StateCollector
from outreach.outbox import transition
from tests.support.factories import make_contact, make_message

NOW = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)


def _scrape(collector: StateCollector) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    samples: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_gauges_count_messages_by_state_and_channel_and_the_oldest_due(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        contact = make_contact(session)
        make_message(session, contact, due_at=NOW - timedelta(minutes=3))
        make_message(session, contact, due_at=NOW + timedelta(hours=1))
        make_message(session, contact, channel="email", due_at=NOW - timedelta(minutes=1))
        sent = make_message(session, contact, due_at=NOW - timedelta(hours=2))
        transition(session, sent.id, [MessageState.SCHEDULED], MessageState.SENT)

    samples = _scrape(StateCollector(session_factory, lambda: NOW, lambda: {"outreach": 7}))

    assert samples['outreach_messages{channel="sms",state="scheduled"}'] == 2
    assert samples['outreach_messages{channel="email",state="scheduled"}'] == 1
    assert samples['outreach_messages{channel="sms",state="sent"}'] == 1
    # The sent one was due earlier but is no longer waiting; the future one is not late.
    assert samples["outreach_oldest_due_seconds"] == 180
    assert samples['outreach_queue_depth{queue="outreach"}'] == 7
    assert samples["outreach_broker_up"] == 1


def test_an_unhandled_crisis_item_shows_how_long_it_has_waited(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        contact = make_contact(session)
        session.add_all(
            [
                InboxItem(
                    contact_id=contact.id, kind="crisis", urgent=True, created_at=NOW - timedelta(minutes=20)
                ),
                InboxItem(
                    contact_id=contact.id, kind="crisis", urgent=True, created_at=NOW - timedelta(minutes=5)
                ),
                InboxItem(
                    contact_id=contact.id,
                    kind="crisis",
                    urgent=True,
                    state=InboxState.HANDLED,
                    created_at=NOW - timedelta(hours=3),
                ),
                InboxItem(contact_id=contact.id, kind="message", created_at=NOW - timedelta(days=2)),
            ]
        )

    samples = _scrape(StateCollector(session_factory, lambda: NOW))

    assert samples["outreach_crisis_unhandled"] == 2
    assert samples["outreach_crisis_oldest_unhandled_seconds"] == 20 * 60


def test_a_broker_that_does_not_answer_reads_as_down_without_failing_the_scrape(
    session_factory: sessionmaker[Session],
) -> None:
    def unreachable() -> dict[str, int]:
        raise ConnectionError("broker down")

    samples = _scrape(StateCollector(session_factory, lambda: NOW, unreachable))

    assert samples["outreach_broker_up"] == 0
    assert samples["outreach_oldest_due_seconds"] == 0


def test_claiming_records_how_late_each_message_was(session_factory: sessionmaker[Session]) -> None:
    def late_between_30_and_60() -> float:
        above = REGISTRY.get_sample_value("outreach_scheduling_lag_seconds_bucket", {"le": "60.0"}) or 0.0
        below = REGISTRY.get_sample_value("outreach_scheduling_lag_seconds_bucket", {"le": "30.0"}) or 0.0
        return above - below

    before = late_between_30_and_60()
    with session_factory.begin() as session:
        contact = make_contact(session)
        make_message(session, contact, due_at=NOW - timedelta(seconds=45))
        make_message(session, contact, due_at=NOW - timedelta(seconds=45))
    with session_factory.begin() as session:
        assert len(claim_due(session, NOW)) == 2

    assert late_between_30_and_60() - before == 2
