"""The sandbox's memory: messages, accept counts, opt-outs and injected faults.

One process, in memory, behind one lock: the create path touches it for a few microseconds
and never does I/O, so it keeps up with a benchmark's thousands of creates per second.
Records carry both wall-clock and monotonic accept times so a race test can compare them with
the moment a STOP was stored.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from outreach.models.base import utcnow
from outreach.sandbox.faults import SmsFault
from outreach.sandbox.formats import PRICE_PER_SEGMENT, count_segments, new_sid
from outreach.sandbox.mailbox import Mailbox
from outreach.sandbox.records import CallbackAttempt, OptOut, Rejection, SmsRecord, StatusChange

TERMINAL = frozenset({"delivered", "undelivered", "failed", "received", "canceled"})


@dataclass
class RuntimeConfig:
    """Behaviour a test may change while the sandbox runs (PUT /_sandbox/config)."""

    callback_delay: float
    status_callbacks: bool
    auto_reply: bool
    # A line every page shows, e.g. what the app holds and until when (set by `outreach run`).
    notice: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "callback_delay": self.callback_delay,
            "status_callbacks": self.status_callbacks,
            "auto_reply": self.auto_reply,
            "notice": self.notice,
        }


@dataclass
class FaultDecision:
    latency: float = 0.0
    error: SmsFault | None = None
    delivery: SmsFault | None = None
    hang: SmsFault | None = None


class SandboxState:
    def __init__(
        self,
        account_sid: str,
        config: RuntimeConfig,
        seed: int | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.account_sid = account_sid
        # The process clock (OUTREACH_CLOCK can fix it), so message times agree with the app's.
        self.clock = clock
        self.config = config
        self.lock = threading.Lock()
        self.mailbox = Mailbox()
        # Requests held by a "hang" fault; set from the event loop only (asyncio.Event is not thread-safe).
        self.hangs: set[asyncio.Event] = set()
        self._reset_locked(seed)

    def _reset_locked(self, seed: int | None) -> None:
        self.messages: dict[str, SmsRecord] = {}
        self.ordered: list[SmsRecord] = []
        self.accepts_by_to: Counter[str] = Counter()
        self.accepts_by_to_body: Counter[tuple[str, str]] = Counter()
        self.opt_outs: dict[str, OptOut] = {}
        self.rejections: list[Rejection] = []
        self.sms_faults: list[SmsFault] = []
        self.rng = random.Random(seed)
        self._seq = 0

    def reset(self, seed: int | None = None) -> None:
        with self.lock:
            self._reset_locked(seed)
        self.mailbox.reset(seed)

    def release_hangs(self) -> None:
        """Answer every held request now. Call from the event loop thread."""
        for event in list(self.hangs):
            event.set()

    # Faults ---------------------------------------------------------------------------------

    def add_sms_fault(self, fault: SmsFault) -> None:
        with self.lock:
            self.sms_faults.append(fault)

    def remove_sms_fault(self, fault_id: str) -> bool:
        with self.lock:
            before = len(self.sms_faults)
            self.sms_faults = [f for f in self.sms_faults if f.id != fault_id]
            return len(self.sms_faults) != before

    def decide(self, to: str) -> FaultDecision:
        """Which injected faults hit this create; uses up counted rules."""
        decision = FaultDecision()
        with self.lock:
            if not self.sms_faults:
                return decision
            for fault in list(self.sms_faults):
                # The first matching rule of each kind wins.
                if not fault.matches(to) or getattr(decision, fault.kind):
                    continue
                if fault.rate < 1.0 and self.rng.random() >= fault.rate:
                    continue
                if fault.kind == "latency":
                    decision.latency = fault.seconds
                else:
                    setattr(decision, fault.kind, fault)
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.sms_faults.remove(fault)
        return decision

    # Messages -------------------------------------------------------------------------------

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def accept_outbound(
        self,
        *,
        to: str,
        from_: str,
        body: str,
        messaging_service_sid: str | None,
        status_callback: str | None,
        validity_period: int | None,
    ) -> tuple[SmsRecord, dict[str, Any]]:
        """Record a provider accept; returns the record and its resource as answered now."""
        now = self.clock()
        status = "accepted" if messaging_service_sid else "queued"
        with self.lock:
            record = SmsRecord(
                seq=self._next(),
                sid=new_sid(),
                account_sid=self.account_sid,
                direction="outbound-api",
                to=to,
                from_=from_,
                body=body,
                status=status,
                messaging_service_sid=messaging_service_sid,
                status_callback=status_callback,
                validity_period=validity_period,
                date_created=now,
                # Twilio fills date_sent at create too; reconciliation lists by it.
                date_sent=now,
                accepted_monotonic=time.monotonic(),
                num_segments=count_segments(body),
                history=[StatusChange(status, now)],
            )
            self.messages[record.sid] = record
            self.ordered.append(record)
            self.accepts_by_to[to] += 1
            self.accepts_by_to_body[(to, body)] += 1
            return record, record.to_resource()

    def note_rejection(self, to: str | None, code: int) -> None:
        rejection = Rejection(to, code, self.clock(), time.monotonic())
        with self.lock:
            self.rejections.append(rejection)

    def rejection_view(self, to: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r.to_json() for r in self.rejections if to is None or r.to == to]

    def record_message(self, *, direction: str, to: str, from_: str, body: str, status: str) -> SmsRecord:
        """An inbound message from a fake phone, or Twilio's own auto-reply to it."""
        now = self.clock()
        with self.lock:
            record = SmsRecord(
                seq=self._next(),
                sid=new_sid(),
                account_sid=self.account_sid,
                direction=direction,
                to=to,
                from_=from_,
                body=body,
                status=status,
                messaging_service_sid=None,
                status_callback=None,
                validity_period=None,
                date_created=now,
                date_sent=now,
                accepted_monotonic=time.monotonic(),
                num_segments=count_segments(body),
                history=[StatusChange(status, now)],
            )
            if direction != "inbound":
                record.price = "-" + PRICE_PER_SEGMENT
            self.messages[record.sid] = record
            self.ordered.append(record)
            return record

    def advance(self, sid: str, status: str, error_code: int | None) -> SmsRecord | None:
        """Move a message to its next status; None if it is gone (reset) or already terminal."""
        now = self.clock()
        with self.lock:
            record = self.messages.get(sid)
            if record is None or record.status in TERMINAL:
                return None
            record.status = status
            record.date_updated = now
            record.error_code = error_code
            if status in ("sent", "delivered", "undelivered"):
                segments_price = float(PRICE_PER_SEGMENT) * record.num_segments
                record.price = f"-{segments_price:.5f}"
            record.history.append(StatusChange(status, now, error_code))
            return record

    def note_callback(self, sid: str, attempt: CallbackAttempt) -> None:
        with self.lock:
            record = self.messages.get(sid)
            if record is not None:
                record.callbacks.append(attempt)

    def get(self, sid: str) -> SmsRecord | None:
        with self.lock:
            return self.messages.get(sid)

    def resource(self, sid: str) -> dict[str, Any] | None:
        with self.lock:
            record = self.messages.get(sid)
            return record.to_resource() if record else None

    def page(
        self, match: Callable[[SmsRecord], bool], *, before_seq: int | None, offset: int, size: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of resources, newest first, and the seq to continue before (None at the end)."""
        with self.lock:
            found: list[SmsRecord] = []
            skipped = 0
            for record in reversed(self.ordered):
                if before_seq is not None and record.seq >= before_seq:
                    continue
                if not match(record):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                if len(found) == size:
                    return [r.to_resource() for r in found], found[-1].seq
                found.append(record)
            return [r.to_resource() for r in found], None

    def snapshot(self) -> list[SmsRecord]:
        """All messages, oldest first (a copy of the list; records are shared)."""
        with self.lock:
            return list(self.ordered)

    def control_view(self, sid: str | None = None, phone: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                r.to_control()
                for r in self.ordered
                if (sid is None or r.sid == sid) and (phone is None or r.phone == phone)
            ]

    def accepts(self) -> dict[str, Any]:
        with self.lock:
            by_body: list[dict[str, Any]] = [
                {"to": to, "body": body, "count": n} for (to, body), n in self.accepts_by_to_body.items()
            ]
            return {
                "total": sum(self.accepts_by_to.values()),
                "by_to": dict(self.accepts_by_to),
                "by_to_body": by_body,
                "duplicates": [entry for entry in by_body if entry["count"] > 1],
            }

    def phones(self) -> list[dict[str, Any]]:
        """Every fake phone that sent or received something, most recent first."""
        summary: dict[str, dict[str, Any]] = {}
        with self.lock:
            for record in self.ordered:
                entry = summary.setdefault(record.phone, {"number": record.phone, "messages": 0})
                entry["messages"] += 1
                entry["last_at"] = record.date_created.isoformat()
                entry["opted_out"] = record.phone in self.opt_outs
        return sorted(summary.values(), key=lambda e: e["last_at"], reverse=True)

    # Opt-outs -------------------------------------------------------------------------------

    def is_opted_out(self, number: str) -> bool:
        with self.lock:
            return number in self.opt_outs

    def set_opted_out(self, number: str, opted_out: bool) -> None:
        with self.lock:
            if opted_out:
                self.opt_outs.setdefault(number, OptOut(number, self.clock(), time.monotonic()))
            else:
                self.opt_outs.pop(number, None)

    def opt_out_view(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"number": o.number, "at": o.at.isoformat(), "monotonic": o.monotonic}
                for o in self.opt_outs.values()
            ]
