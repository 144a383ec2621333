"""Fault tests: kill workers (at chosen and at random points), freeze one past its send lease,
restart Redis, drop database connections and restart the database server, run two beats,
provider 429s, 500s, timeouts and hangs, duplicate and reordered status callbacks, the web
process killed while texts arrive, the worker killed while status callbacks wait to be applied,
the web process killed while they arrive.

After each, the sandbox's accept counts show no message sent twice, every message ends sent
(here nothing fails for good), helped only by the sweeps beat would run anyway, and no status
moved backward. Each records its line for `make faults` (tests/support/faults.py).

Every test runs the production shape (docker-compose.yml): send workers, and one worker apart
for the control queue (dispatch, replies, status callbacks), started again if one exits on its
own, as the compose file's restart policy does, so the line can still be measured; the line
then says so and the test fails (a worker started by hand would stay down). A fault is aimed at
the process that does the work it disturbs.
"""

from __future__ import annotations

import os
import random
import signal
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from functools import cache, partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from outreach.migrate import upgrade
from outreach.models import (
    InboundMessage,
    InboxItem,
    Message,
    MessageEvent,
    MessageState,
    PendingStatusEvent,
    utcnow,
)
from outreach.outbox import insert_messages
from tests.support import faults, services
from tests.support.e2e import ONCALL_SMS, System, daytime_zone, running_system
from tests.support.factories import make_contact
from tests.support.private_pg import PrivatePostgres, private_postgres
from tests.support.private_pg import unavailable as private_pg_unavailable
from tests.support.processes import private_redis
from tests.support.sandbox import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

MESSAGES = 80
DONE = {MessageState.SENT, MessageState.DELIVERED}


def production_system(pg_url: str, tmp_path: Path, **kwargs: Any) -> AbstractContextManager[System]:
    return running_system(pg_url, tmp_path, control_worker=True, supervised=True, **kwargs)


@contextmanager
def slow_system(pg_url: str, tmp_path: Path, **kwargs: Any) -> Iterator[System]:
    with production_system(pg_url, tmp_path, **kwargs) as system:
        # Every provider call takes a while, so faults land in the middle of batches.
        system.sandbox.control.inject("latency", seconds=0.05)
        yield system


def _load(system: System, count: int = MESSAGES) -> list[int]:
    with system.factory.begin() as session:
        contacts = [make_contact(session, timezone=daytime_zone()).id for _ in range(count // 2)]
        rows = [
            {
                "idempotency_key": f"fault:{n}",
                "contact_id": contacts[n % len(contacts)],
                "channel": "sms",
                "category": "care",
                "kind": "automated",
                "body_override": f"Fault test message {n}.",
                "due_at": utcnow(),
            }
            for n in range(count)
        ]
        insert_messages(session, rows, now=utcnow())
        return list(session.scalars(select(Message.id).where(Message.idempotency_key.like("fault:%"))))


def _settle(system: System, ids: list[int], timeout: float = 90) -> str | None:
    """Wait until every message is sent, running the rescue and reconcile sweeps as beat would;
    the states it found if the deadline passed (inside pytest's own timeout), else None."""
    last: dict[str, list[str | None]] = {}

    def all_done() -> bool:
        with system.factory() as session:
            rows = session.execute(
                select(Message.state, Message.state_reason).where(Message.id.in_(ids))
            ).all()
        last.clear()
        for state, reason in rows:
            last.setdefault(state, []).append(reason)
        if set(last) <= DONE:
            return True
        system.run_task("outreach.rescue_stuck")
        system.run_task("outreach.reconcile_unknown")
        return False

    try:
        wait_for(all_done, timeout=timeout, interval=1.0, what="every message to be sent")
    except AssertionError as timed_out:
        pending = {s: sorted(set(map(str, reasons))) for s, reasons in last.items() if s not in DONE}
        return f"{timed_out}; not sent: {pending}"
    return None


def _states(system: System, ids: list[int]) -> dict[str, list[str]]:
    """How many messages are in each state, with the reasons and due times of those not done."""
    with system.factory() as session:
        rows = session.execute(
            select(Message.state, Message.state_reason, Message.due_at, Message.attempts).where(
                Message.id.in_(ids)
            )
        ).all()
    found: dict[str, list[str]] = {}
    for state, reason, due_at, attempts in rows:
        detail = "" if state in DONE else f"{reason} (due {due_at:%H:%M:%S}, attempts {attempts})"
        found.setdefault(state, []).append(detail)
    return {state: [*sorted(set(details)), f"x{len(details)}"] for state, details in found.items()}


def _noted(system: System, note: str) -> str:
    """The line's note, with any worker that exited on its own and was started again."""
    restarts = system.processes.restarts
    if not restarts:
        return note
    said = f"exited on its own and restarted: {', '.join(restarts)}"
    return f"{note}; {said}" if note else said


def _no_worker_exited(system: System) -> None:
    """The supervisor keeps the run going so the line can be measured, but a worker that exits
    on a fault is a failure of its own: started by hand, it would stay down."""
    assert not system.processes.restarts, f"exited on its own: {system.processes.restarts}"


def _finish(
    system: System, ids: list[int], fault: str, note: str = "", timeout: float = 90, beside: int = 0
) -> None:
    """Settle, record the fault's report line, then hold the promises: every message sent,
    none twice, no status backward. ``beside``: texts the test sent besides the load."""
    problem = _settle(system, ids, timeout)
    accepts = system.sandbox.control.accepts()
    sent = accepts.total - beside
    line = faults.outcome(system.factory, fault, ids, sent, len(accepts.duplicates), _noted(system, note))
    faults.record(line)
    assert problem is None, problem
    assert accepts.duplicates == [], f"sent twice: {accepts.duplicates}"
    assert sent == len(ids)
    _no_worker_exited(system)
    assert line.ok, line


def _accepted(system: System) -> int:
    return system.sandbox.control.accepts().total


def _reached(system: System, accepts: int) -> bool:
    return _accepted(system) >= accepts


@pytest.mark.parametrize("kill_after", [5, 40])
def test_worker_killed_mid_batch_sends_nothing_twice(pg_url: str, tmp_path: Path, kill_after: int) -> None:
    with slow_system(pg_url, tmp_path, workers=2) as system:
        ids = _load(system)
        wait_for(lambda: _accepted(system) >= kill_after, timeout=60, what=f"{kill_after} sends")
        system.processes.kill("worker1", signal.SIGKILL)
        system.processes.start_worker("worker1")
        _finish(system, ids, f"worker SIGKILL after {kill_after} sends")


def _leases_held(system: System, ids: list[int]) -> tuple[datetime | None, datetime]:
    """The latest send lease among these messages now being sent, and the database's clock."""
    with system.factory() as session:
        lease = session.scalar(
            select(func.max(Message.lease_until)).where(
                Message.id.in_(ids), Message.state == MessageState.SENDING
            )
        )
        now = session.scalar(select(func.now()))
    assert now is not None
    return lease, now


def _sweeps_sent(system: System) -> int:
    """How many rescue sweeps beat has sent so far (its log says so at each)."""
    log = (system.processes.log_dir / "beat1.log").read_text(errors="replace")
    return log.count("Sending due task rescue-stuck")


def test_a_frozen_worker_holds_up_no_crisis_reply_and_sends_nothing_twice(
    pg_url: str, tmp_path: Path
) -> None:
    """A send worker frozen mid-batch (SIGSTOP: a paused container, a migrated VM, a machine
    swapping) past its send lease, holding its batch's rows locked. The rescue sweeps that run
    meanwhile on the control worker must not wait on those rows: they would take its processes
    one by one and a crisis text would wait for the frozen worker. Woken, the frozen worker
    sends none of its batch twice."""
    with slow_system(pg_url, tmp_path, workers=2) as system:
        ids = _load(system)
        wait_for(lambda: _leases_held(system, ids)[0] is not None, timeout=60, what="a batch being sent")
        system.processes.freeze("worker1")
        try:
            # Past whatever it may hold: the batch being sent when it froze or, if that one
            # finished just before, anything it claimed since (the tests' claim lease is the
            # shorter of the two).
            lease, now = _leases_held(system, ids)
            held_until = lease or now + timedelta(seconds=system.settings.send_lease_seconds)
            passed = held_until + timedelta(seconds=1)
            wait_for(
                lambda: _leases_held(system, ids)[1] > passed,
                timeout=system.settings.send_lease_seconds + 30,
                what="the frozen batch's send lease to pass",
            )
            # More sweeps than the control worker has processes.
            sweeps = _sweeps_sent(system) + 3
            wait_for(lambda: _sweeps_sent(system) >= sweeps, timeout=30, what="three rescue sweeps")
            with system.factory.begin() as session:
                phone = make_contact(session, timezone=daytime_zone()).phone
            assert phone is not None
            control = system.sandbox.control
            control.reply(phone, "i want to end it all")
            wait_for(
                lambda: [m for m in control.messages(phone) if m.direction != "inbound" and "988" in m.body],
                timeout=15,
                what="the crisis reply while a send worker is frozen",
            )
            wait_for(lambda: control.accepts().count(ONCALL_SMS) == 1, timeout=15, what="the on-call SMS")
        finally:
            system.processes.thaw("worker1")
        _finish(system, ids, "worker frozen (SIGSTOP) past its send lease", beside=2)


@pytest.mark.real_timers  # a private redis-server under libfaketime never answers
def test_redis_restart_loses_no_message(pg_url: str, tmp_path: Path) -> None:
    with (
        private_redis() as redis,
        slow_system(pg_url, tmp_path, broker_url=redis.url, redis_url=redis.url) as system,
    ):
        ids = _load(system)
        wait_for(lambda: _accepted(system) >= 10, timeout=60, what="sending to be under way")
        redis.restart()  # no persistence: every queued task and rate slot is gone
        _finish(system, ids, "Redis restart (no persistence)")


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    problem = private_pg_unavailable()
    if problem:
        if services.IN_CI:
            pytest.fail(f"{problem}, and CI=true: the suite needs it", pytrace=False)
        pytest.skip(problem)
    with private_postgres() as server:
        yield server


@pytest.mark.real_timers  # a private server, as a private Redis, under libfaketime: not tried
def test_dropped_connections_and_a_database_restart_lose_nothing(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    """Connections cut twice while sending (``pg_terminate_backend``), then the server itself
    restarted: every process reconnects and nothing is lost or sent twice."""
    admin = private_pg.url().replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "outreach"')
    url = private_pg.url("outreach")
    upgrade(url)
    with slow_system(url, tmp_path) as system:
        ids = _load(system)
        for accepts in (5, 10):
            wait_for(partial(_reached, system, accepts), timeout=60, what="sending to be under way")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = 'outreach' AND pid <> pg_backend_pid()"
                )
            # The next fault only once sends go on over fresh connections.
            resumed = _accepted(system) + 2
            wait_for(partial(_reached, system, resumed), timeout=60, what="sends on fresh connections")
        # At once: a batch cut short above waits for the rescue sweep, which beat runs every
        # 30 s and _finish runs at once; sends are under way on fresh connections meanwhile.
        private_pg.restart()
        _finish(system, ids, "PostgreSQL: connections dropped x2, server restart")


def test_two_beats_and_two_workers_send_each_message_once(pg_url: str, tmp_path: Path) -> None:
    with slow_system(pg_url, tmp_path, workers=2, beats=2) as system:
        ids = _load(system, count=120)
        _finish(system, ids, "two beats, two workers (two dispatchers)")


@pytest.mark.timeout(900)  # each kill waits for a fresh worker to be ready (seconds on a busy machine)
def test_worker_killed_at_random_points_sends_nothing_twice(pg_url: str, tmp_path: Path) -> None:
    """SIGKILL a worker at random moments while it sends (3 kills; ``make faults``: 20)."""
    kills = int(os.environ.get("OUTREACH_FAULTS_KILLS", "3"))
    seed = int(os.environ.get("OUTREACH_FAULTS_SEED", "20261204"))
    count = 40 * kills
    points = sorted(random.Random(seed).sample(range(1, count - 10), kills))
    with slow_system(pg_url, tmp_path, workers=2) as system:
        system.sandbox.control.clear_faults()
        system.sandbox.control.inject("latency", seconds=0.2)
        ids = _load(system, count=count)
        for point in points:
            try:
                wait_for(partial(_reached, system, point), timeout=120, what=f"{point} sends")
            except AssertionError as stalled:
                found = _states(system, ids)
                raise AssertionError(f"{stalled}; {_accepted(system)} accepted; {found}") from None
            system.processes.kill("worker1", signal.SIGKILL)
            system.processes.start_worker("worker1")
        _finish(system, ids, f"worker SIGKILL at {kills} random points", f"seed {seed}", timeout=240)


PROVIDER_FAULTS: dict[str, dict[str, Any]] = {
    "provider 429 storm": {"kind": "error", "code": 20429, "count": 60},
    "provider 500s": {"kind": "error", "code": 20500, "count": 40},
    "provider timeouts (answer after the client gave up)": {"kind": "latency", "seconds": 3.0, "count": 10},
    "provider hangs (accepted, never answered)": {"kind": "hang", "seconds": 4.0, "count": 10},
}


# A provider slower than the client's timeout: each call of a batch then waits the timeout out.
# The batch calls only what can end within its send lease (the rest go back as never tried),
# and reconciliation waits from the timeout, so a request that lands late is found, not resent.
@pytest.mark.parametrize("fault", list(PROVIDER_FAULTS))
def test_provider_faults_end_with_each_message_sent_once(pg_url: str, tmp_path: Path, fault: str) -> None:
    with production_system(pg_url, tmp_path) as system:
        system.sandbox.control.inject(**PROVIDER_FAULTS[fault])
        ids = _load(system)
        _finish(system, ids, fault)


@cache
def _client() -> httpx.Client:
    """One client for the webhooks these tests post, keeping its connections as Twilio does: a
    client made for each post builds a TLS context, ~20 ms of the machine's CPU, and a test posts
    hundreds. A connection to a killed web process is not reused (the kernel closed it)."""
    return httpx.Client(timeout=5)


def _signed_post(system: System, path_and_query: str, form: dict[str, str]) -> int:
    url = system.settings.public_base_url + path_and_query
    signature = RequestValidator(TEST_AUTH_TOKEN).compute_signature(url, form)
    try:
        response = _client().post(url, data=form, headers={"X-Twilio-Signature": str(signature)})
    except httpx.HTTPError:
        return 0  # what Twilio sees when the web process is down: it will retry
    return response.status_code


def _delivered(system: System, count: int) -> list[int]:
    """``count`` messages sent and delivered (the sandbox's callbacks applied)."""
    ids = _load(system, count=count)
    assert _settle(system, ids) is None
    wait_for(
        lambda: all(system.message(i).state == MessageState.DELIVERED for i in ids),
        timeout=30,
        what="every message delivered",
    )
    return ids


def test_duplicate_and_reordered_status_callbacks_never_move_a_status_back(
    pg_url: str, tmp_path: Path
) -> None:
    with production_system(pg_url, tmp_path) as system:
        ids = _delivered(system, 20)
        for message_id in ids:
            message = system.message(message_id)
            assert message.provider_id and message.correlation_id
            for status in ("delivered", "sent", "queued", "delivered", "sending"):
                form = {
                    "MessageSid": message.provider_id,
                    "MessageStatus": status,
                    "AccountSid": TEST_ACCOUNT_SID,
                }
                assert (
                    _signed_post(system, f"/webhooks/twilio/status?c={message.correlation_id}", form) == 200
                )
        _finish(system, ids, "duplicate and reordered status callbacks")
        assert all(system.message(i).state == MessageState.DELIVERED for i in ids)


# Texts posted while the web process is killed: enough that the kill lands mid-stream.
TEXTS = 200


def test_web_killed_while_webhooks_arrive_loses_and_repeats_nothing(pg_url: str, tmp_path: Path) -> None:
    """Patients' texts arrive from eight connections while the web process is SIGKILLed. A 200
    means stored (ordinary replies are answered after the commit they share): every text
    answered is in the database before anything is retried. Twilio retries what got no 200;
    here every text is posted again after the restart (a superset of Twilio's retries,
    including those whose 200 was lost): each is stored and handled exactly once."""
    with production_system(pg_url, tmp_path) as system:
        with system.factory.begin() as session:
            phones = [str(make_contact(session, timezone=daytime_zone()).phone) for _ in range(TEXTS)]
        forms = [
            {
                "MessageSid": f"SM{uuid.uuid4().hex}",
                "AccountSid": TEST_ACCOUNT_SID,
                "From": phone,
                "To": system.settings.twilio_from,
                "Body": f"Running late today, sorry {n}",
            }
            for n, phone in enumerate(phones)
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = [pool.submit(_signed_post, system, "/webhooks/twilio/sms", form) for form in forms]
            wait_for(lambda: sum(r.done() for r in results) >= TEXTS // 10, timeout=60, interval=0.002,
                     what="the first texts answered")
            system.processes.kill("web", signal.SIGKILL)
            codes = [r.result() for r in results]
        assert 0 < codes.count(200) < len(forms), "the kill landed while texts arrived"
        answered = [form["MessageSid"] for form, code in zip(forms, codes, strict=True) if code == 200]
        with system.factory() as session:
            kept = set(session.scalars(
                select(InboundMessage.provider_sid).where(InboundMessage.provider_sid.in_(answered))
            ))
        assert kept == set(answered), f"{len(set(answered) - kept)} texts answered 200 were not stored"
        system.processes.start_web(system.settings.web_port)
        assert all(_signed_post(system, "/webhooks/twilio/sms", form) == 200 for form in forms)  # retries
        sids = [form["MessageSid"] for form in forms]

        def processed() -> int:
            with system.factory() as session:
                return len(
                    session.scalars(
                        select(InboundMessage.id).where(
                            InboundMessage.provider_sid.in_(sids), InboundMessage.processed_at.is_not(None)
                        )
                    ).all()
                )

        wait_for(lambda: processed() == len(forms), timeout=60, what="every text processed")
        with system.factory() as session:
            stored = session.scalars(
                select(InboundMessage.id).where(InboundMessage.provider_sid.in_(sids))
            ).all()
            items = session.scalars(
                select(InboxItem.inbound_message_id).where(InboxItem.inbound_message_id.in_(stored))
            ).all()
        line = faults.FaultLine(
            "web SIGKILL while texts arrive",
            scheduled=len(forms),
            accepts=len(stored),
            duplicates=len(items) - len(set(items)),
            lost=len(forms) - len(set(items)),
            regressions=0,
            note=_noted(system, "inbound texts: stored / inbox items"),
        )
        faults.record(line)
        assert line.ok, line
        _no_worker_exited(system)


CALLBACKS_PER_MESSAGE = 25


def test_worker_killed_while_status_callbacks_wait_applies_each_once(pg_url: str, tmp_path: Path) -> None:
    """The webhook stores callbacks; the control worker applies them. Kill it (SIGKILL) while
    they arrive and are being applied: those stored meanwhile are answered 200 all the same,
    and once it is back each becomes exactly one event on its message."""
    with production_system(pg_url, tmp_path) as system:
        ids = _delivered(system, 20)
        before = {i: _events_of(system, i) for i in ids}
        messages = [system.message(i) for i in ids]
        answered: list[int] = []
        for n in range(CALLBACKS_PER_MESSAGE):
            if n == CALLBACKS_PER_MESSAGE // 3:
                system.processes.kill("control", signal.SIGKILL)
            answered += [_post_read(system, message) for message in messages]
        assert answered == [200] * len(answered), "stored and answered with no control worker running"
        assert _waiting_callbacks(system) > 0
        system.processes.start_worker("control")
        wait_for(lambda: _waiting_callbacks(system) == 0, timeout=60, what="every callback applied")
        _hold_callback_promises(
            system, "worker SIGKILL while status callbacks wait", before,
            expected=dict.fromkeys(ids, CALLBACKS_PER_MESSAGE), more_is_duplicate=True,
        )


def _events_of(system: System, message_id: int) -> int:
    with system.factory() as session:
        events = select(MessageEvent.id).where(MessageEvent.message_id == message_id)
        return len(session.scalars(events).all())


def _waiting_callbacks(system: System) -> int:
    with system.factory() as session:
        return len(session.scalars(select(PendingStatusEvent.id)).all())


def test_web_killed_while_status_callbacks_arrive_loses_none_it_answered(
    pg_url: str, tmp_path: Path
) -> None:
    """A 200 for a status callback means it was committed (the group commit answers after its
    transaction). SIGKILL the web process while `read` callbacks arrive: every one answered 200
    is applied; those that got no answer are posted again, as Twilio retries; no status moves
    back."""
    with production_system(pg_url, tmp_path) as system:
        ids = _delivered(system, 20)
        before = {i: _events_of(system, i) for i in ids}
        messages = {i: system.message(i) for i in ids}
        # Ten callbacks a message and a close watch, as for the texts above: with three and a
        # 50 ms look, a quick web process had answered them all before the kill landed.
        posted = ids * 10
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = [pool.submit(_post_read, system, messages[message_id]) for message_id in posted]
            wait_for(lambda: sum(r.done() for r in results) >= len(ids), timeout=60, interval=0.002,
                     what="the first callbacks answered")
            system.processes.kill("web", signal.SIGKILL)
            codes = [r.result() for r in results]
        answered = {i: sum(1 for m, c in zip(posted, codes, strict=True) if m == i and c == 200) for i in ids}
        unanswered = [m for m, c in zip(posted, codes, strict=True) if c != 200]
        system.processes.start_web(system.settings.web_port)
        assert unanswered, "the kill landed while callbacks arrived"
        retried = [_post_read(system, messages[message_id]) for message_id in unanswered]
        assert retried == [200] * len(unanswered)
        wait_for(lambda: _waiting_callbacks(system) == 0, timeout=60, what="every callback applied")
        # A callback killed after its commit but before its answer is kept twice, like any
        # retried callback: more events than answers is expected here, fewer is a loss.
        _hold_callback_promises(
            system, "web SIGKILL while status callbacks arrive", before,
            expected={i: answered[i] + unanswered.count(i) for i in ids}, more_is_duplicate=False,
        )


def _hold_callback_promises(
    system: System, fault: str, before: dict[int, int], *, expected: dict[int, int], more_is_duplicate: bool
) -> None:
    """Record the fault's line, then hold the promises: every callback answered 200 became an
    event (none twice, where each was posted once), and every message is still ``delivered``."""
    applied = {i: _events_of(system, i) - before[i] for i in expected}
    line = faults.FaultLine(
        fault,
        scheduled=sum(expected.values()),
        accepts=sum(applied.values()),
        duplicates=sum(max(0, applied[i] - n) for i, n in expected.items()) if more_is_duplicate else 0,
        lost=sum(max(0, n - applied[i]) for i, n in expected.items()),
        regressions=sum(system.message(i).state != MessageState.DELIVERED for i in expected),
        note=_noted(system, "status callbacks: posted / events applied"),
    )
    faults.record(line)
    assert line.ok, line
    _no_worker_exited(system)
    assert all(system.message(i).provider_status == "read" for i in expected)


def _post_read(system: System, message: Message) -> int:
    form = {"MessageSid": str(message.provider_id), "MessageStatus": "read", "AccountSid": TEST_ACCOUNT_SID}
    return _signed_post(system, f"/webhooks/twilio/status?c={message.correlation_id}", form)
