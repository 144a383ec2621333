"""End to end through the sandbox's fake phone: STOP, START, a crisis text (behind a backlog of
sends and of status callbacks), and the STOP race."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from outreach.config import Settings
from outreach.contacts import consent
from outreach.delivery.dispatch import CHUNK
from outreach.models import InboxItem, Message, MessageState, PendingStatusEvent, utcnow
from outreach.outbox import insert_messages
from outreach.sandbox.control import SandboxMessage
from tests.support import faults
from tests.support.e2e import ONCALL_EMAIL, ONCALL_SMS, System, daytime_zone, running_system
from tests.support.factories import make_contact
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(pg_url: str, tmp_path: Path) -> Iterator[System]:
    with running_system(pg_url, tmp_path) as running:
        yield running


@pytest.fixture
def racing_system(pg_url: str, tmp_path: Path) -> Iterator[System]:
    """Thirty reminders to one patient at once: the daily limit (``care_cap_per_day``) is lifted
    so that every one of them races the opt-out instead of being skipped by the limit. The
    production shape: the opt-out is processed by the control worker while the send worker sends."""
    with running_system(pg_url, tmp_path, control_worker=True, care_cap_per_day=1000) as running:
        yield running


def _patient(system: System) -> tuple[int, str]:
    with system.factory.begin() as session:
        contact = make_contact(session, timezone=daytime_zone())
        assert contact.phone is not None
        return contact.id, contact.phone


def _automated_sms(system: System, contact_id: int, bodies: list[str], due_in: float = 0.0) -> list[int]:
    due = utcnow() + timedelta(seconds=due_in)
    rows = [
        {
            "idempotency_key": f"e2e:{contact_id}:{body}",
            "contact_id": contact_id,
            "channel": "sms",
            "category": "care",
            "kind": "automated",
            "body_override": body,
            "due_at": due,
        }
        for body in bodies
    ]
    with system.factory.begin() as session:
        insert_messages(session, rows, now=utcnow())
        return list(
            session.scalars(
                select(Message.id)
                .where(Message.idempotency_key.in_([r["idempotency_key"] for r in rows]))
                .order_by(Message.id)
            )
        )


def test_stop_stops_everything_and_start_resumes(system: System) -> None:
    contact_id, phone = _patient(system)
    control = system.sandbox.control
    (first,) = _automated_sms(system, contact_id, ["Reminder one from the clinic."])
    system.wait_state(first, MessageState.DELIVERED)
    (later,) = _automated_sms(system, contact_id, ["Reminder two from the clinic."], due_in=8)

    assert control.reply(phone, "STOP").webhook_status == 200
    system.wait_state(later, MessageState.CANCELLED, timeout=10)
    with system.factory() as session:
        assert consent.summary(session, contact_id)["sms"]["care"] == "revoked"

    assert control.reply(phone, "START").webhook_status == 200
    delivered = system.wait_state(later, MessageState.DELIVERED, timeout=30)
    assert delivered.attempts == 1
    assert control.accepts().count(phone) == 2
    assert control.rejections(to=phone) == [], "nothing was even attempted while opted out"


BACKLOG = 3000


def _backlog(system: System, count: int = BACKLOG, name: str = "backlog") -> list[str]:
    """A campaign's worth of texts to other patients, all due now; returns their keys."""
    with system.factory.begin() as session:
        others = [make_contact(session, timezone=daytime_zone()).id for _ in range(30)]
        rows = [
            {
                "idempotency_key": f"e2e:{name}:{n}",
                "contact_id": others[n % len(others)],
                "channel": "sms",
                "category": "care",
                "kind": "system",
                "body_override": f"Clinic news, part {n}.",
                "due_at": utcnow(),
            }
            for n in range(count)
        ]
        insert_messages(session, rows, now=utcnow())
    return [str(r["idempotency_key"]) for r in rows]


# Not out yet: waiting, in flight, or ``unknown`` (a call whose answer never came, or a batch
# whose worker stalled past its lease on a busy machine: reconciled, and sent again if the
# provider never had it).
UNSETTLED = [MessageState.SCHEDULED, MessageState.QUEUED, MessageState.SENDING, MessageState.UNKNOWN]


def _unsent(system: System, keys: list[str]) -> int:
    with system.factory() as session:
        return len(
            session.scalars(
                select(Message.id).where(
                    Message.idempotency_key.in_(keys),
                    Message.state.in_(UNSETTLED),
                )
            ).all()
        )


def _states(system: System, keys: list[str]) -> dict[tuple[str, str | None], int]:
    """How many of these messages are in each state, and why: what a failed count shows."""
    with system.factory() as session:
        rows = session.execute(
            select(Message.state, Message.state_reason, func.count())
            .where(Message.idempotency_key.in_(keys))
            .group_by(Message.state, Message.state_reason)
        ).all()
    return {(str(state), reason): count for state, reason, count in rows}


STATUS_EVENTS_WAITING = 10_000


def _sent_earlier(system: System) -> None:
    """10,000 messages sent earlier, awaiting their delivery callbacks. Made before the backlog
    starts: this process also runs the sandbox that answers the workers' sends, and writing
    10,000 rows here while it answers would slow its answers, not the system under test."""
    with system.factory.begin() as session:
        earlier = make_contact(session, timezone=daytime_zone()).id
        rows = [
            {
                "idempotency_key": f"e2e:earlier:{n}",
                "contact_id": earlier,
                "channel": "sms",
                "category": "care",
                "kind": "system",
                "body_override": f"Earlier news, part {n}.",
                "due_at": utcnow() + timedelta(days=365),
            }
            for n in range(STATUS_EVENTS_WAITING)
        ]
        insert_messages(session, rows, now=utcnow())
        session.execute(
            text(
                "UPDATE messages SET state = 'sent', provider_id = 'SM' || md5(id::text),"
                " correlation_id = md5('c' || id::text) WHERE idempotency_key LIKE 'e2e:earlier:%'"
            )
        )


def _status_events_waiting(system: System) -> int:
    """Their delivery callbacks, stored as the webhook stores them and not yet applied; returns
    how many still wait (the worker starts on them at once)."""
    with system.factory.begin() as session:
        session.execute(
            text(
                "INSERT INTO pending_status_events"
                " (provider_id, correlation_id, status, payload, received_at, not_before)"
                " SELECT provider_id, correlation_id, 'delivered', '{}', now(), now() FROM messages"
                " WHERE idempotency_key LIKE 'e2e:earlier:%'"
            )
        )
    with system.factory() as session:
        return session.scalar(select(func.count()).select_from(PendingStatusEvent)) or 0


def test_crisis_text_gets_a_reply_within_seconds_and_alerts_on_call(system: System) -> None:
    """... even while a campaign's backlog is being sent and 10,000 status callbacks wait to be
    applied: the reply queues behind neither. One worker takes both queues here, the control
    queue first whenever a process comes free; taking them in turn, each expired beat tick
    ahead of the reply took the control queue's turn, and under load the reply waited for the
    backlog (over 15 s)."""
    contact_id, phone = _patient(system)
    control = system.sandbox.control
    _sent_earlier(system)
    backlog = _backlog(system)
    wait_for(lambda: _unsent(system, backlog) < BACKLOG, timeout=30, what="the backlog to start sending")
    assert _status_events_waiting(system) > STATUS_EVENTS_WAITING // 2
    sent_at = datetime.now(UTC)
    control.reply(phone, "i want to end it all")

    def crisis_reply() -> list[str]:
        return [m.body for m in control.messages(phone) if m.direction != "inbound" and "988" in m.body]

    wait_for(crisis_reply, timeout=15, what="the crisis reply on the patient's phone", interval=0.02)
    reply = next(m for m in control.messages(phone) if "988" in m.body)
    # The reply overtook the backlog (before the control lane it waited for all of it; measured
    # in bench/crisis_bench.py): once the backlog is out, a good part of it went after the
    # reply. Compared by the sandbox's accept times, not by what was left when the reply was
    # seen, which a busy machine's polling makes late.
    wait_for(lambda: _unsent(system, backlog) == 0, timeout=90, what="the backlog sent")
    sent = [m for m in control.messages() if m.body.startswith("Clinic news")]
    after_reply = sum(m.accepted_monotonic > reply.accepted_monotonic for m in sent)
    assert len(sent) == BACKLOG, _states(system, backlog)
    assert after_reply > BACKLOG // 10, f"only {after_reply} of the backlog went after the reply"
    assert (reply.accepted_at - sent_at).total_seconds() < 15
    assert "911" in reply.body
    wait_for(lambda: control.accepts().count(ONCALL_SMS) == 1, timeout=15, what="the on-call SMS alert")
    wait_for(
        lambda: [m for m in control.mail() if ONCALL_EMAIL in (m.to or "")],
        timeout=15,
        what="the on-call email",
    )
    with system.factory() as session:
        item = session.scalar(select(InboxItem).where(InboxItem.contact_id == contact_id))
        assert item is not None and item.urgent and item.kind == "crisis"
    wait_for(
        lambda: _delivered_earlier(system) == STATUS_EVENTS_WAITING,
        timeout=60,
        what="the waiting callbacks applied",
    )


@pytest.fixture
def production_shape(pg_url: str, tmp_path: Path) -> Iterator[System]:
    """Send workers and a control worker apart, as docker-compose.yml runs them, with the
    default send lease: a send task may hold its process for a whole batch, as in production
    (the suite's short one hands a slow batch back after a few seconds). The claim lease stays
    short, so the rescue sweep comes every few seconds as in the rest of the suite."""
    send_lease = Settings.model_fields["send_lease_seconds"].default
    with running_system(pg_url, tmp_path, control_worker=True, send_lease_seconds=send_lease) as running:
        yield running


PROVIDER_SECONDS = 0.2  # a real provider's answer takes this long, not the sandbox's 1 ms
SLOW_BACKLOG = 400


def test_a_crisis_reply_overtakes_sends_to_a_slow_provider(production_shape: System) -> None:
    """Every send process is busy with a batch to a provider that takes 0.2 s an answer (a
    task of 100 takes 20 s). The crisis text is processed and its reply sent by the control
    worker at once, ahead of all but a few of the sends. Were the reply on the send queue, or one
    worker taking both queues, it would wait for a send process to come free: a batch at least
    (over 30 s here; over a minute seen in bench/crisis_bench.py)."""
    system = production_shape
    control = system.sandbox.control
    contact_id, phone = _patient(system)
    control.inject("latency", seconds=PROVIDER_SECONDS)
    keys = _backlog(system, SLOW_BACKLOG, "slow")
    wait_for(lambda: control.accepts().total >= 4, timeout=30, what="the slow sends to start")
    sent_at = datetime.now(UTC)
    control.reply(phone, "i want to end it all")

    def crisis_replies() -> list[SandboxMessage]:
        return [m for m in control.messages(phone) if m.direction != "inbound" and "988" in m.body]

    reply = wait_for(crisis_replies, timeout=30, what="the crisis reply on the phone", interval=0.02)[0]
    # Judged against the sends, not a stopwatch: behind a send process the reply would follow a
    # whole task of the backlog (CHUNK sends of PROVIDER_SECONDS each, 20 s) from each process.
    # Beside them, only what the send processes accepted while the reply was processed goes
    # first: a handful, or a few dozen on a machine loaded enough to take seconds over it.
    went_first = sum(
        m.accepted_monotonic < reply.accepted_monotonic
        for m in control.messages()
        if m.body.startswith("Clinic news")
    )
    assert went_first < CHUNK, f"{went_first} of the backlog went before the reply: it waited behind them"
    assert (reply.accepted_at - sent_at).total_seconds() < 15
    assert _unsent(system, keys) > SLOW_BACKLOG // 2, "the backlog was still being sent"
    with system.factory() as session:
        item = session.scalar(select(InboxItem).where(InboxItem.contact_id == contact_id))
        assert item is not None and item.urgent
    control.clear_faults()


def _delivered_earlier(system: System) -> int:
    with system.factory() as session:
        delivered = select(func.count()).where(
            Message.idempotency_key.like("e2e:earlier:%"), Message.state == MessageState.DELIVERED
        )
        return session.scalar(delivered) or 0


@pytest.mark.parametrize("opt_out", ["STOP", "please stop texting me"])
def test_opt_out_during_sending_means_nothing_accepted_after_it_was_stored(
    racing_system: System, opt_out: str
) -> None:
    """Messages are being claimed and sent (slowly) when the patient opts out. Twilio blocks
    after a bare STOP on its own; a natural-language opt-out it does not, so only our lock
    protocol keeps the rest from going out. Either way nothing is accepted after the opt-out
    was stored."""
    system = racing_system
    contact_id, phone = _patient(system)
    control = system.sandbox.control
    control.inject("latency", to=phone, seconds=0.15)
    ids = _automated_sms(system, contact_id, [f"Race message {n:02d}." for n in range(30)])
    wait_for(lambda: control.accepts().count(phone) >= 3, timeout=30, what="sending to be under way")

    result = control.reply(phone, opt_out)
    stored = datetime.now(UTC)  # the webhook answers only after its transaction committed
    assert result.webhook_status == 200

    def settled() -> bool:
        # One light query, not a full load of each message: the sandbox answering the
        # workers runs in this process, and a busy poll here would slow it past the
        # client's timeout (then a late accept is an ambiguous send, not a lock failure).
        with system.factory() as session:
            states = session.scalars(select(Message.state).where(Message.id.in_(ids))).all()
        return all(
            s not in (MessageState.SCHEDULED, MessageState.QUEUED, MessageState.SENDING) for s in states
        )

    wait_for(settled, timeout=60, interval=0.2, what="every race message to settle")
    accepts = control.accepts()
    fault = f"STOP racing a send ({opt_out!r})"
    faults.record(faults.outcome(system.factory, fault, ids, accepts.count(phone), len(accepts.duplicates)))
    # The race messages only: the confirmation of a natural-language opt-out (ours; Twilio
    # sends its own for a bare STOP) is meant to go out after it, whenever its task runs.
    bodies = {system.message(i).body_override for i in ids}
    outbound = [m for m in control.messages(phone) if m.direction == "outbound-api" and m.body in bodies]
    late = {
        m.body: (m.accepted_at - stored).total_seconds()
        for m in outbound
        if m.accepted_at >= stored
    }
    by_body = {system.message(i).body_override: system.message(i) for i in ids}
    assert outbound and not late, {
        body: (seconds, by_body[body].state, by_body[body].attempts, by_body[body].state_reason)
        for body, seconds in late.items()
    }
    assert control.accepts().duplicates == []
    assert any(system.message(i).state == MessageState.CANCELLED for i in ids)
    # Twilio (and the sandbox) block a bare STOP the moment it arrives, before our webhook has
    # stored it; a send already under way then gets 21610. None may come after we stored it.
    assert all(datetime.fromisoformat(r["at"]) < stored for r in control.rejections(to=phone))
