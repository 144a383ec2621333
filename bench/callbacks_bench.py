"""Delivery with the sandbox's status callbacks on, as in production, and a crisis text during it.

Real processes, as in ``bench.delivery_bench`` (whose helpers it uses): PostgreSQL, the local
Redis, the sandbox in its own process posting each message's ``queued``, ``sent`` and
``delivered`` callbacks (0.2 s apart, ``CALLBACK_WORKERS`` at once, signed) to one web process
(``outreach serve``), which stores them; one beat; two workers, which send and apply the stored
callbacks. ``messages`` SMS rows fall due at once; once the first is recorded sent, a patient
outside the blast texts crisis language from the sandbox's fake phone. Measured:

- msgs/s from the due instant to the last message recorded ``sent`` (or those sent within
  ``window`` seconds);
- for each message sent, from recorded ``sent`` to recorded ``delivered`` (the applier's
  update), once every callback has been applied;
- from the crisis text leaving the phone to the provider accepting its reply.

Goals (the webhook-ingest issue): >= 1,000 msgs/s with every message delivered within 5 s of
its send; the crisis reply within 2 s.

    .venv/bin/python -m bench.callbacks_bench [--messages 20000] [--window 40]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench import cpu, delivery_bench
from bench.crisis_bench import crisis_reply_seconds, wait_until_sending
from bench.delivery_bench import Bench, WorkerSpec
from bench.stats import percentile
from outreach.db import make_engine, make_session_factory
from outreach.migrate import upgrade
from outreach.models import Contact, Message, MessageEvent, MessageState, PendingStatusEvent, utcnow
from tests.support import services
from tests.support.processes import free_port
from tests.support.sandbox import running_sandbox
from tests.support.waiting import wait_for

GOAL_MPS = 1000.0
GOAL_DELIVERED = 5.0
GOAL_CRISIS = 2.0
CALLBACK_WORKERS = 32
Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class Figures:
    made_due: int
    sent: int  # recorded sent within the window
    seconds: float  # due instant -> last recorded sent (or the window)
    delivered: list[float]  # per message sent: recorded sent -> recorded delivered, seconds
    received: list[float]  # per message sent: recorded sent -> its "delivered" callback stored
    not_delivered: int  # sent, but no delivered applied by the end of the wait
    crisis: float  # the text leaving the phone -> its reply accepted by the provider
    load: float
    cpu: dict[str, float]  # CPU seconds per part, from the due instant to every callback applied

    @property
    def mps(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def _delivery_times(bench: Bench, tag: str) -> tuple[list[float], int]:
    with bench.factory() as session:
        rows = session.execute(
            select(Message.state, Message.sent_at, Message.updated_at).where(
                delivery_bench._of(bench, tag), Message.sent_at.is_not(None)
            )
        ).all()
    times = [(u - s).total_seconds() for state, s, u in rows if state == MessageState.DELIVERED and s]
    return times, sum(1 for state, _, _ in rows if state != MessageState.DELIVERED)


def _callback_times(bench: Bench, tag: str) -> list[float]:
    """Recorded sent -> the web process storing the message's ``delivered`` callback."""
    with bench.factory() as session:
        rows = session.execute(
            select(Message.sent_at, MessageEvent.received_at)
            .join(MessageEvent, MessageEvent.message_id == Message.id)
            .where(delivery_bench._of(bench, tag), MessageEvent.status == "delivered")
        ).all()
    return [(received - sent).total_seconds() for sent, received in rows if sent]


def _waiting_callbacks(bench: Bench) -> int:
    with bench.factory() as session:
        return session.scalar(select(func.count()).select_from(PendingStatusEvent)) or 0


def _blast(bench: Bench, messages: int, window: float, phone: str) -> Figures:
    tag = bench.tag("callbacks")
    due = delivery_bench._fall_due(bench, tag, messages, timedelta(seconds=2))
    closes = due + timedelta(seconds=window)
    cpu_before = cpu.snapshot()
    wait_until_sending(bench, tag)
    crisis = crisis_reply_seconds(bench, phone)

    def done() -> bool:
        states = delivery_bench._states(bench, tag)
        return utcnow() >= closes or not any(states.get(s) for s in delivery_bench.PENDING)

    wait_for(done, timeout=window + 60, interval=1.0, what=f"{tag} to be sent or the window to close")
    load = os.getloadavg()[0]
    delivery_bench._stop_leftovers(bench, tag)
    with bench.factory() as session:
        sent = session.scalar(
            select(func.count()).where(delivery_bench._of(bench, tag), Message.sent_at <= closes)
        ) or 0
    # Every callback the sandbox posts (the last 0.4 s after the last accept), applied; those
    # still missing after three minutes count as never delivered.
    with contextlib.suppress(AssertionError):
        wait_for(lambda: _waiting_callbacks(bench) == 0 and _delivery_times(bench, tag)[1] == 0,
                 timeout=180, interval=1.0, what="every status callback posted and applied")
    used = cpu.spent(cpu_before, cpu.snapshot())
    delivered, not_delivered = _delivery_times(bench, tag)
    received = _callback_times(bench, tag)
    last = delivery_bench._last_sent_at(bench, tag)
    seconds = (last - due).total_seconds() if sent == messages else window
    return Figures(messages, sent, seconds, delivered, received, not_delivered, crisis, load, used)


def run(
    *, messages: int = 20_000, window: float = 40.0, log: Callable[[str], None] = lambda _: None
) -> Figures:
    for problem in (services.ensure_postgres(), services.ensure_redis()):
        if problem:
            raise RuntimeError(problem)
    url = services.create_pg_database("outreach_bench_callbacks")
    engine = make_engine(url)
    log_dir = Path(tempfile.mkdtemp(prefix="callbacks-bench-"))
    try:
        upgrade(url)
        contact_ids = delivery_bench._seed_contacts(url, messages + 1)
        blast, patient = contact_ids[:messages], contact_ids[messages]
        web_port = free_port()
        settings = delivery_bench.bench_settings(url, web_port)
        factory = make_session_factory(engine)
        with factory() as session:
            phone = session.scalar(select(Contact.phone).where(Contact.id == patient))
        assert phone is not None
        with running_sandbox(settings, mode="process", sandbox_status_callbacks=True,
                             sandbox_callback_workers=CALLBACK_WORKERS) as sandbox:
            bench = Bench(sandbox.settings, sandbox.control, factory, blast, log_dir, log)
            with delivery_bench._stack(bench, "callbacks") as processes:
                processes.start_web(web_port)
                processes.start_beat("beat1")
                delivery_bench._start_worker(processes, "worker1", WorkerSpec())
                delivery_bench._start_worker(processes, "worker2", WorkerSpec())
                delivery_bench._warm_up(bench)
                return _blast(bench, messages, window, phone)
    finally:
        engine.dispose()
        services.drop_pg_database(url)
        shutil.rmtree(log_dir, ignore_errors=True)


def report(f: Figures) -> Pairs:
    within = sum(1 for s in f.delivered if s <= GOAL_DELIVERED)
    met_rate = f.mps >= GOAL_MPS and within == f.sent and f.not_delivered == 0
    spread = _spread(sorted(f.delivered))
    return [
        (
            "throughput, status callbacks on",
            f"{f.mps:,.0f} msgs/s ({f.sent:,} of {f.made_due:,} due sent in {f.seconds:.1f} s, 2 workers, "
            f"1 web process; load {f.load:.1f}; {'meets' if met_rate else 'MISSES'} "
            f">= {GOAL_MPS:,.0f} msgs/s, each delivered <= {GOAL_DELIVERED:.0f} s)",
        ),
        (
            "  sent -> delivered",
            f"{spread}; {within:,} of {f.sent:,} within {GOAL_DELIVERED:.0f} s"
            + (f", {f.not_delivered:,} never delivered" if f.not_delivered else ""),
        ),
        (
            "  sent -> callback stored",
            _spread(sorted(f.received)) + " (the sandbox's 0.4 s between accept and delivered included)",
        ),
        (
            "  CPU per message",
            ", ".join(f"{part} {secs / max(f.sent, 1) * 1000:.2f} ms"
                      for part, secs in sorted(f.cpu.items(), key=lambda item: -item[1])),
        ),
        ("  what the cores allow", _ceiling(f)),
        (
            "crisis reply, callbacks on",
            f"{f.crisis * 1000:,.0f} ms ({'meets' if f.crisis <= GOAL_CRISIS else 'MISSES'} <= 2 s)",
        ),
    ]


def _ceiling(f: Figures) -> str:
    """The send rate this machine's cores could sustain with every message's callbacks handled
    as they come: all of it costs CPU here, and nothing runs on more cores than there are."""
    cores = os.cpu_count() or 1
    sent = max(f.sent, 1)
    total = sum(f.cpu.values()) / sent
    ours = sum(secs for part, secs in f.cpu.items() if part != "sandbox") / sent
    return (
        f"{total * 1000:.2f} ms of CPU per message in all, {ours * 1000:.2f} ms without the sandbox "
        f"(Twilio's side): {cores} cores keep up with at most {cores / total:,.0f} msgs/s "
        f"({cores / ours:,.0f} with Twilio elsewhere)"
    )


def _spread(seconds: list[float]) -> str:
    if not seconds:
        return "none"
    return (
        f"p50 {percentile(seconds, 0.5):.1f} s, p99 {percentile(seconds, 0.99):.1f} s, "
        f"worst {seconds[-1]:.1f} s"
    )


def pairs(messages: int = 20_000, window: float = 40.0) -> Pairs:
    return report(run(messages=messages, window=window))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=float, default=40.0)
    args = parser.parse_args()
    for what, figure in report(run(messages=args.messages, window=args.window, log=print)):
        print(f"{what:<34} {figure}")


if __name__ == "__main__":
    main()
