"""Prometheus metrics: what happened (counters and histograms, counted where it happens, in any
process) and what is (gauges read from the database and the broker when /metrics is scraped).

Celery runs sends in forked pool processes, so each counts into files under the directory that
prometheus-client reads from ``PROMETHEUS_MULTIPROC_DIR`` (the library's own variable, read
when it is imported); ``/metrics`` merges those files with the live gauges. Without that
variable, counters stay in the process that counted them (fine for the web process alone).

No label ever carries patient data: labels are channels, states, classes, error codes, queue
names. Counters inside a transaction that rolls back over-count by that call: they say what was
attempted, the database says what is.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from outreach.models import InboundClass, InboxItem, InboxState, Message, MessageState, PendingStatusEvent

PROVIDER_CALLS = Counter(
    "outreach_provider_calls", "Provider send calls, by channel and outcome.", ["channel", "outcome"]
)
PROVIDER_ERRORS = Counter(
    "outreach_provider_errors", "Provider send errors, by channel and error code.", ["channel", "code"]
)
RETRIES = Counter("outreach_send_retries", "Sends put back on the schedule after a transient error.")
RECONCILIATIONS = Counter(
    "outreach_reconciliations", "Unknown sends looked up at the provider, by result.", ["result"]
)
INBOUND_REPLIES = Counter(
    "outreach_inbound_replies", "Patients' texts stored, by classification.", ["classification"]
)
CRISIS_ALERTS = Counter("outreach_crisis_alerts", "Replies read as a crisis (each alerts on-call staff).")
URGENT_RECLAIMED = Counter(
    "outreach_urgent_reclaimed",
    "Crisis replies and on-call alerts claimed again by the rescue sweep: their send task never ran.",
)
SIGNATURE_FAILURES = Counter(
    "outreach_webhook_signature_failures", "Webhook requests refused for a bad signature.", ["webhook"]
)
STATUS_EVENTS = Counter(
    "outreach_status_events",
    "Stored status callbacks the worker applied to their message, or dropped as unknown.",
    ["outcome"],
)
SCHEDULING_LAG = Histogram(
    "outreach_scheduling_lag_seconds",
    "Claim time minus due time, per claimed message.",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
)
CRISIS_FIRST_ACTION = Histogram(
    "outreach_crisis_first_action_seconds",
    "From a crisis item's arrival to a staff member marking it handled.",
    buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)


def count_provider_error(channel: str, code: str | None) -> None:
    PROVIDER_CALLS.labels(channel, "error").inc()
    PROVIDER_ERRORS.labels(channel, code or "none").inc()


def count_inbound(classification: str) -> None:
    INBOUND_REPLIES.labels(classification).inc()
    if classification == InboundClass.CRISIS:
        CRISIS_ALERTS.inc()


def observe_lag(claimed_at: datetime, due: Iterable[datetime]) -> None:
    for due_at in due:
        SCHEDULING_LAG.observe(max((claimed_at - due_at).total_seconds(), 0.0))


# --- What is: read at scrape time -------------------------------------------------------------

QueueDepth = Callable[[], dict[str, int]]
# States whose rows carry a lease: claimed for a send task, or being sent.
IN_FLIGHT = frozenset({str(MessageState.QUEUED), str(MessageState.SENDING)})


@dataclass(eq=False)  # registries key collectors by identity
class StateCollector(Collector):
    """Gauges from the database and the broker, cached for ``ttl`` seconds so that frequent
    scrapes (or several Prometheus servers) cost one GROUP BY per interval, not one each."""

    session_factory: sessionmaker[Session]
    clock: Callable[[], datetime]
    queue_depth: QueueDepth | None = None
    ttl: float = 10.0
    _cached: tuple[float, list[Metric]] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.ttl:
                self._cached = (time.monotonic(), self._read())
            return list(self._cached[1])

    def _read(self) -> list[Metric]:
        now = self.clock()
        by_state = GaugeMetricFamily(
            "outreach_messages", "Messages in the outbox, by state and channel.", labels=["state", "channel"]
        )
        with self.session_factory() as session:
            # The earliest lease per group comes with the count, in the same scan.
            rows = session.execute(
                select(Message.state, Message.channel, func.count(), func.min(Message.lease_until)).group_by(
                    Message.state, Message.channel
                )
            ).all()
            oldest_due = session.scalar(
                select(func.min(Message.due_at)).where(
                    Message.state == MessageState.SCHEDULED, Message.due_at <= now
                )
            )
            # Callbacks no worker has looked at yet; one whose message was not found is set
            # aside (``not_before`` moved on) and dropped within minutes anyway.
            oldest_callback = session.scalar(
                select(func.min(PendingStatusEvent.received_at)).where(
                    PendingStatusEvent.not_before == PendingStatusEvent.received_at
                )
            )
            crisis_count, oldest_crisis = session.execute(
                select(func.count(), func.min(InboxItem.created_at)).where(
                    InboxItem.kind == "crisis", InboxItem.state != InboxState.HANDLED
                )
            ).one()
        leases = [lease for state, _, _, lease in rows if state in IN_FLIGHT and lease is not None]
        for state, channel, count, _ in rows:
            by_state.add_metric([state, channel], count)
        metrics: list[Metric] = [by_state]
        metrics.append(
            _gauge(
                "outreach_oldest_lease_overdue_seconds",
                "How long past its lease the most overdue queued or sending message is (0: none). "
                "The rescue sweep takes such a message back within its interval unless a worker "
                "that does not run (frozen, or cut off with its connection open) holds it.",
                _age(now, min(leases, default=None)),
            )
        )
        metrics.append(
            _gauge(
                "outreach_oldest_due_seconds",
                "How late the oldest due, unclaimed message is (0: none waiting).",
                _age(now, oldest_due),
            )
        )
        metrics.append(
            _gauge(
                "outreach_status_callbacks_waiting_seconds",
                "Age of the oldest status callback stored and not yet applied or set aside (0: none).",
                _age(now, oldest_callback),
            )
        )
        metrics.append(
            _gauge("outreach_crisis_unhandled", "Crisis items no staff member has handled.", crisis_count)
        )
        metrics.append(
            _gauge(
                "outreach_crisis_oldest_unhandled_seconds",
                "Age of the oldest crisis item not yet handled (0: none).",
                _age(now, oldest_crisis),
            )
        )
        if self.queue_depth is not None:
            depth = GaugeMetricFamily(
                "outreach_queue_depth", "Tasks waiting in the broker.", labels=["queue"]
            )
            up = 1.0
            try:
                for queue, waiting in self.queue_depth().items():
                    depth.add_metric([queue], waiting)
            except Exception:
                # The broker is down: say so rather than fail the whole scrape.
                up = 0.0
            metrics += [depth, _gauge("outreach_broker_up", "1 if the broker answered this scrape.", up)]
        return metrics


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _age(now: datetime, since: datetime | None) -> float:
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0


def exposition(state: Collector | None) -> bytes:
    """The text Prometheus scrapes: every process's counters, then the live gauges."""
    text = generate_latest(_counted())
    if state is not None:
        live = CollectorRegistry(auto_describe=False)
        live.register(state)
        text += generate_latest(live)
    return text


def _counted() -> CollectorRegistry:
    registry = CollectorRegistry()
    try:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    except ValueError:
        return REGISTRY  # PROMETHEUS_MULTIPROC_DIR unset: this process's own counters
    return registry


def serve_worker_metrics(port: int) -> WSGIServer | None:
    """A worker on a machine with no web process serves its own pool's counters (no gauges:
    those come from the database, which one web process already reports). On every
    interface, so Prometheus on another machine can reach it: keep the port internal."""
    if not port:
        return None
    server, _thread = start_http_server(port, registry=_counted())
    return server


def broker_queue_depth(broker_url: str, queues: Sequence[str]) -> QueueDepth:
    """Waiting tasks per queue: LLEN on Redis, a row count on the embedded broker."""
    from kombu.connection import Connection

    def depth() -> dict[str, int]:
        with Connection(broker_url, connect_timeout=2) as connection:  # type: ignore[no-untyped-call]
            channel = connection.default_channel
            return {q: int(channel.queue_declare(queue=q, passive=False).message_count) for q in queues}

    return depth


# --- Who may read it --------------------------------------------------------------------------

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def may_scrape(token: str, authorization: str | None, client_host: str | None) -> bool:
    """With a token set, only a request bearing it; without one, only this machine."""
    if token:
        scheme, _, offered = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode())
    return client_host in LOOPBACK
