"""The live gauges /metrics reads from the database, and the lag the claim records, with fixed
instants on both databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from outreach.channels import DeliveryError
from outreach.channels.twilio import callbacks
from outreach.config import Settings
from outreach.delivery import status
from outreach.delivery.claim import claim_due
from outreach.delivery.send import NoLimit, Services, send_message
from outreach.models import InboxItem, InboxState, MessageState
from outreach.ops.metrics import StateCollector, exposition
from outreach.outbox import transition
from outreach.replies import inbox
from tests.support.factories import make_contact, make_message
from tests.support.fakes import FakeClock, FakeProvider

NOW = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


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
        transition(session, sent.id, [MessageState.SCHEDULED], MessageState.SENT, now=NOW)

    samples = _scrape(StateCollector(session_factory, lambda: NOW, lambda: {"outreach": 7}))

    assert samples['outreach_messages{channel="sms",state="scheduled"}'] == 2
    assert samples['outreach_messages{channel="email",state="scheduled"}'] == 1
    assert samples['outreach_messages{channel="sms",state="sent"}'] == 1
    # The sent one was due earlier but is no longer waiting; the future one is not late.
    assert samples["outreach_oldest_due_seconds"] == 180
    assert samples['outreach_queue_depth{queue="outreach"}'] == 7
    assert samples["outreach_broker_up"] == 1


def _overdue(session_factory: sessionmaker[Session]) -> float:
    return _scrape(StateCollector(session_factory, lambda: NOW))["outreach_oldest_lease_overdue_seconds"]


def test_a_message_held_past_its_lease_shows_how_long(session_factory: sessionmaker[Session]) -> None:
    """What a frozen worker (or a stopped rescue sweep) leaves: a queued or sending message past
    its lease. Leases still running, and messages done, do not count."""
    with session_factory.begin() as session:
        contact = make_contact(session)
        held, claimed, running, done = (make_message(session, contact) for _ in range(4))
        leases = {
            held.id: (MessageState.SENDING, NOW - timedelta(minutes=4)),
            claimed.id: (MessageState.QUEUED, NOW - timedelta(seconds=30)),
            running.id: (MessageState.SENDING, NOW + timedelta(minutes=5)),
            done.id: (MessageState.SENT, NOW - timedelta(hours=1)),
        }
        for message_id, (state, lease) in leases.items():
            transition(session, message_id, [MessageState.SCHEDULED], state, lease_until=lease, now=NOW)

    assert _overdue(session_factory) == 240

    with session_factory.begin() as session:
        transition(session, held.id, [MessageState.SENDING], MessageState.UNKNOWN, now=NOW)
        transition(session, claimed.id, [MessageState.QUEUED], MessageState.SCHEDULED, now=NOW)

    assert _overdue(session_factory) == 0


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
        above = _sample("outreach_scheduling_lag_seconds_bucket", le="60.0")
        return above - _sample("outreach_scheduling_lag_seconds_bucket", le="30.0")

    before = late_between_30_and_60()
    with session_factory.begin() as session:
        contact = make_contact(session)
        make_message(session, contact, due_at=NOW - timedelta(seconds=45))
        make_message(session, contact, due_at=NOW - timedelta(seconds=45))
    with session_factory.begin() as session:
        assert len(claim_due(session, NOW)) == 2

    assert late_between_30_and_60() - before == 2


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_provider_errors_are_counted_by_code_and_the_retry_and_the_accept_too(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    noon_la = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)  # inside the sending window
    provider = FakeProvider(script=[DeliveryError("rate limited", permanent=False, code="20429")])
    services = Services(
        settings=settings,
        session_factory=session_factory,
        providers={"sms": provider},
        limiter=NoLimit(),
        clock=FakeClock(noon_la),
        sleep=lambda _s: None,
    )
    before = (
        _sample("outreach_provider_errors_total", channel="sms", code="20429"),
        _sample("outreach_provider_calls_total", channel="sms", outcome="error"),
        _sample("outreach_provider_calls_total", channel="sms", outcome="accepted"),
        _sample("outreach_send_retries_total"),
    )
    with session_factory.begin() as session:
        message = make_message(session, make_contact(session), due_at=noon_la - timedelta(minutes=1))
        message_id = message.id
    for _ in range(2):
        with session_factory.begin() as session:
            transition(session, message_id, [MessageState.SCHEDULED], MessageState.QUEUED, now=NOW)
        send_message(services, message_id)

    after = (
        _sample("outreach_provider_errors_total", channel="sms", code="20429"),
        _sample("outreach_provider_calls_total", channel="sms", outcome="error"),
        _sample("outreach_provider_calls_total", channel="sms", outcome="accepted"),
        _sample("outreach_send_retries_total"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1]


def test_handling_a_crisis_item_records_how_long_it_waited(session_factory: sessionmaker[Session]) -> None:
    def within(seconds: str) -> float:
        return _sample("outreach_crisis_first_action_seconds_bucket", le=seconds)

    before = (within("300.0"), within("900.0"))
    with session_factory.begin() as session:
        item = InboxItem(
            contact_id=make_contact(session).id,
            kind="crisis",
            urgent=True,
            created_at=NOW - timedelta(minutes=10),
        )
        session.add(item)
        session.flush()
        inbox.mark_handled(session, item.id, "nurse", NOW)
        inbox.mark_handled(session, item.id, "nurse", NOW + timedelta(hours=1))  # already handled: not again

    assert (within("300.0") - before[0], within("900.0") - before[1]) == (0, 1)


def test_status_callbacks_not_yet_applied_show_how_long_they_have_waited(
    session_factory: sessionmaker[Session],
) -> None:
    """A stopped worker shows as callbacks growing old (the StatusCallbacksNotApplied alert)."""
    def collector() -> StateCollector:
        return StateCollector(session_factory, lambda: NOW, None)

    assert _scrape(collector())["outreach_status_callbacks_waiting_seconds"] == 0
    event = callbacks.parse_status_callback({"MessageSid": "SM" + "a" * 32, "MessageStatus": "sent"}, None)
    with session_factory.begin() as session:
        status.store(session, [(event, NOW - timedelta(minutes=4)), (event, NOW - timedelta(minutes=1))])
    assert _scrape(collector())["outreach_status_callbacks_waiting_seconds"] == 240


def test_every_example_alert_reads_metrics_that_are_served(session_factory: sessionmaker[Session]) -> None:
    """deploy/prometheus/alerts.yml names metrics by hand: an alert on a name /metrics does not
    serve never fires, silently (a rename, a typo)."""
    def family(name: str) -> str:
        return re.sub(r"_(total|bucket|sum|count)$", "", name)

    text = exposition(StateCollector(session_factory, lambda: NOW, lambda: {"outreach": 0})).decode()
    served = {family(line.split()[2]) for line in text.splitlines() if line.startswith("# TYPE ")}
    rules = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    for rule in rules:
        named = {family(name) for name in re.findall(r"outreach_\w+", rule["expr"])}
        assert named, rule["alert"]
        assert named <= served, f"{rule['alert']} reads {sorted(named - served)}: not on /metrics"
    assert "RepliesLaneNotTaken" in {rule["alert"] for rule in rules}
