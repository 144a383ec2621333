"""A crisis text while a campaign is sending: its reply must not wait behind the sends.

Real processes, as in ``bench.delivery_bench`` (whose helpers it uses): PostgreSQL, the local
Redis, the sandbox in its own process, one web process (``outreach serve``), one beat, one
send worker with its default pool and the control worker (3 processes), as docker-compose.yml
runs them. Each trial makes ``messages`` SMS rows fall due at once; once
the first of them is recorded sent, a patient outside that blast texts crisis language from
the sandbox's fake phone (a signed inbound webhook to the web process). Measured: from the
text leaving the phone to the provider accepting the crisis reply, and how many of the blast
were still waiting at that moment. Then the rest of the blast is cancelled and the next trial
begins. Goal: p99 <= 2 s over 20 trials (control work has a queue of its own; DESIGN.md).

With ``--mps`` the sender runs at that rate instead of far above the load: at a long code's
1 MPS every send task sleeps towards a slot booked seconds ahead, and the reply must take one
of those instead of queueing behind them (``outreach.delivery.ratelimit``).

    .venv/bin/python -m bench.crisis_bench [--messages 20000] [--trials 20] [--mps 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench import delivery_bench
from bench.delivery_bench import PENDING, Bench, WorkerSpec
from bench.stats import percentile
from outreach.db import make_engine, make_session_factory
from outreach.migrate import upgrade
from outreach.models import Contact, Message, MessageState
from outreach.sandbox.control import SandboxMessage
from tests.support import services
from tests.support.processes import free_port
from tests.support.sandbox import running_sandbox
from tests.support.waiting import wait_for

GOAL_P99 = 2.0
CRISIS_TEXT = "i want to end it all tonight"
Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class Trial:
    seconds: float  # the text leaving the phone -> the crisis reply accepted by the provider
    waiting: int  # rows of the blast not yet sent when the reply was accepted


def _crisis_replies(bench: Bench, phone: str) -> list[SandboxMessage]:
    return [m for m in bench.control.messages(phone) if m.direction != "inbound" and "988" in m.body]


def _waiting(bench: Bench, tag: str) -> int:
    with bench.factory() as session:
        count = session.scalar(
            select(func.count()).where(delivery_bench._of(bench, tag), Message.state.in_(list(PENDING)))
        )
    return count or 0


def _trial(bench: Bench, messages: int, phone: str) -> Trial:
    tag = bench.tag("blast")
    delivery_bench._fall_due(bench, tag, messages, timedelta(seconds=1))
    wait_until_sending(bench, tag)
    seconds = crisis_reply_seconds(bench, phone)
    waiting = _waiting(bench, tag)
    delivery_bench._stop_leftovers(bench, tag)
    bench.control.reset()
    return Trial(seconds, waiting)


def wait_until_sending(bench: Bench, tag: str) -> None:
    """Until the first message of ``tag`` is recorded sent."""

    def sending() -> bool:
        return delivery_bench._states(bench, tag).get(MessageState.SENT, 0) > 0

    wait_for(sending, timeout=30, interval=0.05, what=f"{tag} to start sending")


def crisis_reply_seconds(bench: Bench, phone: str) -> float:
    """Text crisis language from ``phone``; seconds from the text leaving the phone to the
    provider accepting the crisis reply."""
    texted = datetime.now(UTC)
    result = bench.control.reply(phone, CRISIS_TEXT)
    if result.webhook_status != 200:
        raise RuntimeError(f"the inbound webhook answered {result.webhook_status}: {result.error}")
    replies = wait_for(lambda: _crisis_replies(bench, phone), timeout=60, interval=0.02, what="the reply")
    return (replies[0].accepted_at - texted).total_seconds()


def run(
    *,
    messages: int = 20_000,
    trials: int = 20,
    mps: float | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> list[Trial]:
    for problem in (services.ensure_postgres(), services.ensure_redis()):
        if problem:
            raise RuntimeError(problem)
    url = services.create_pg_database("outreach_bench_crisis")
    engine = make_engine(url)
    log_dir = Path(tempfile.mkdtemp(prefix="crisis-bench-"))
    try:
        upgrade(url)
        contact_ids = delivery_bench._seed_contacts(url, messages + trials)
        blast, patients = contact_ids[:messages], contact_ids[messages:]
        web_port = free_port()
        settings = delivery_bench.bench_settings(url, web_port)
        factory = make_session_factory(engine)
        with factory() as session:
            phones = [p for p in session.scalars(select(Contact.phone).where(Contact.id.in_(patients))) if p]
        with running_sandbox(settings, mode="process", sandbox_status_callbacks=False) as sandbox:
            bench = Bench(sandbox.settings, sandbox.control, factory, blast, log_dir, log)
            rate = {} if mps is None else {"max_mps": mps}
            with delivery_bench._stack(bench, "crisis", **rate) as processes:
                processes.start_web(web_port)
                processes.start_beat("beat1")
                delivery_bench._start_worker(processes, "worker1", WorkerSpec(), queues="sends")
                control = WorkerSpec(concurrency=delivery_bench.CONTROL_PROCESSES)
                delivery_bench._start_worker(processes, "control", control, queues="control")
                # At a long code's rate a hundred warm-up messages would take minutes.
                delivery_bench._warm_up(bench, 3 if mps is not None else delivery_bench.WARMUP_MESSAGES)
                results = []
                for n, phone in enumerate(phones):
                    results.append(_trial(bench, messages, phone))
                    trial = results[-1]
                    log(f"trial {n + 1}: {trial.seconds * 1000:.0f} ms, {trial.waiting:,} waiting")
                return results
    finally:
        engine.dispose()
        services.drop_pg_database(url)
        shutil.rmtree(log_dir, ignore_errors=True)


def pairs(messages: int = 20_000, trials: int = 20, mps: float | None = None) -> Pairs:
    """One line: the crisis reply's time under load; with ``mps``, at that sender's rate (a
    long code's 1 MPS: the send tasks hold booked slots seconds ahead, which the reply takes)."""
    load = os.getloadavg()[0]
    results = run(messages=messages, trials=trials, mps=mps)
    seconds = [t.seconds for t in results]
    p50, p99 = percentile(seconds, 0.5), percentile(seconds, 0.99)
    verdict = "meets" if p99 <= GOAL_P99 else "MISSES"
    waiting = sorted(t.waiting for t in results)
    what = "crisis reply under load" if mps is None else f"crisis reply at {mps:g} MPS"
    return [
        (
            what,
            f"p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms over {len(results)} trials, "
            f"{messages:,} due at once, {waiting[0]:,}-{waiting[-1]:,} still waiting at the reply "
            f"({verdict} the goal, 1 send worker and the control worker, load {load:.1f} before)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--mps", type=float, default=None, help="the sender's rate (default: far above)")
    args = parser.parse_args()
    for what, figure in pairs(args.messages, args.trials, args.mps):
        print(f"{what:<26} {figure}")


if __name__ == "__main__":
    main()
