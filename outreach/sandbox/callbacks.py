"""Moves accepted messages through their statuses and posts Twilio-signed status callbacks.

A few worker threads share a time-ordered queue, so the create request returns at once and
one slow webhook does not hold up the rest. A message's callbacks are chained (the next
status is scheduled only after the previous callback was answered), so one message's
callbacks arrive in order; different messages interleave, as at Twilio.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import urllib3
from twilio.request_validator import RequestValidator

from outreach.sandbox.faults import SmsFault
from outreach.sandbox.formats import API_VERSION
from outreach.sandbox.records import CallbackAttempt, SmsRecord
from outreach.sandbox.state import SandboxState

Step = tuple[str, int | None]  # (status, error code)

# Twilio's webhook defaults: connect 5 s, read 15 s; one retry after a failed delivery.
CONNECT_SECONDS, READ_SECONDS = 5.0, 15.0
CALLBACK_TIMEOUT = httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS)  # the phone's texts
POOL_TIMEOUT = urllib3.Timeout(connect=CONNECT_SECONDS, read=READ_SECONDS)  # status callbacks
RETRY_DELAY = 0.5


def plan_for(delivery: SmsFault | None) -> list[Step]:
    """The statuses a message goes through after the create answered."""
    if delivery is None:
        return [("queued", None), ("sent", None), ("delivered", None)]
    if delivery.status == "failed":
        return [("queued", None), ("failed", delivery.code)]
    return [("queued", None), ("sent", None), ("undelivered", delivery.code)]


def callback_params(record: SmsRecord, status: str, error_code: int | None) -> dict[str, str]:
    params = {
        "MessageSid": record.sid,
        "SmsSid": record.sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": record.account_sid,
        "From": record.from_,
        "To": record.to,
        "ApiVersion": API_VERSION,
    }
    if record.messaging_service_sid:
        params["MessagingServiceSid"] = record.messaging_service_sid
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    return params


def signed_headers(
    validator: RequestValidator, url: str, params: dict[str, str], token: str
) -> dict[str, str]:
    return {
        "X-Twilio-Signature": validator.compute_signature(url, params),
        "I-Twilio-Idempotency-Token": token,
        "User-Agent": "TwilioProxy/1.1",
    }


@dataclass(order=True)
class _Job:
    due: float
    order: int
    sid: str = field(compare=False)
    steps: list[Step] = field(compare=False)
    index: int = field(compare=False, default=0)
    attempt: int = field(compare=False, default=1)
    token: str = field(compare=False, default="")
    params: dict[str, str] = field(compare=False, default_factory=dict)


class StatusProgression:
    def __init__(
        self,
        state: SandboxState,
        auth_token: str,
        *,
        workers: int = 4,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self._state = state
        self._validator = RequestValidator(auth_token)
        # urllib3 rather than httpx: posting a callback through httpx cost the sandbox about
        # five times its own work (py-spy), and the sandbox shares the machine with the app
        # it drives in the benchmarks. One keep-alive connection per posting thread.
        self._pool = urllib3.PoolManager(
            maxsize=workers, block=False, retries=False, timeout=POOL_TIMEOUT
        )
        self._retry_delay = retry_delay
        self._queue: list[_Job] = []
        self._order = itertools.count()
        self._wakeup = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"sandbox-callbacks-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=20)
        self._pool.clear()

    def clear(self) -> None:
        """Drop every pending status change (on reset)."""
        with self._wakeup:
            self._queue.clear()

    def follow(self, sid: str, delivery: SmsFault | None) -> None:
        """Take a just-accepted message through its statuses."""
        steps = plan_for(delivery)
        if not self._state.config.status_callbacks:
            # Throughput mode: the final status at once, no HTTP at all.
            for status, code in steps:
                self._state.advance(sid, status, code)
            return
        self._push(_Job(time.monotonic(), 0, sid, steps))

    def _push(self, job: _Job) -> None:
        job.order = next(self._order)
        with self._wakeup:
            heapq.heappush(self._queue, job)
            self._wakeup.notify()

    def _next_job(self) -> _Job | None:
        with self._wakeup:
            while not self._stopping:
                if self._queue:
                    wait = self._queue[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._queue)
                    self._wakeup.wait(wait)
                else:
                    self._wakeup.wait()
            return None

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            self._run(job)

    def _run(self, job: _Job) -> None:
        status, code = job.steps[job.index]
        if job.attempt == 1:
            record = self._state.advance(job.sid, status, code)
            if record is None:  # reset, or already final
                return
            job.token = uuid.uuid4().hex
            job.params = callback_params(record, status, code)
            url = record.status_callback
        else:
            current = self._state.get(job.sid)
            if current is None:
                return
            url = current.status_callback
        delivered = not url or self._post(job.sid, url, status, job)
        if not delivered and job.attempt == 1:
            job.attempt = 2
            job.due = time.monotonic() + self._retry_delay
            self._push(job)
            return
        if job.index + 1 < len(job.steps):
            delay = self._state.config.callback_delay
            self._push(_Job(time.monotonic() + delay, 0, job.sid, job.steps, job.index + 1))

    def _post(self, sid: str, url: str, status: str, job: _Job) -> bool:
        headers = signed_headers(self._validator, url, job.params, job.token)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            response = self._pool.request("POST", url, body=urlencode(job.params), headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            self._state.note_callback(
                sid, CallbackAttempt(status, datetime.now(UTC), None, type(exc).__name__)
            )
            return False
        self._state.note_callback(sid, CallbackAttempt(status, datetime.now(UTC), response.status))
        return response.status < 500
