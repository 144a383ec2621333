"""Failure injection: Twilio's synchronous errors, latency, hangs, opt-outs, as the client sees them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from outreach.sandbox.control import SandboxControlError
from tests.support.sandbox import RunningSandbox, running_sandbox

PATIENT = "+14155550121"
OTHER = "+14155550122"
CLINIC = "+15005550006"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox() as running:
        yield running


def _create(
    sandbox: RunningSandbox, to: str = PATIENT, body: str = "Reminder", timeout: float | None = None
) -> str:
    return str(sandbox.twilio_client(timeout=timeout).messages.create(to=to, from_=CLINIC, body=body).sid)


@pytest.mark.parametrize(
    ("code", "http_status"),
    [(21211, 400), (21408, 400), (21610, 400), (21614, 400), (20429, 429), (20500, 500)],
)
def test_an_injected_error_reaches_the_client_and_nothing_is_accepted(
    sandbox: RunningSandbox, code: int, http_status: int
) -> None:
    sandbox.control.inject("error", code=code, to=PATIENT)

    with pytest.raises(TwilioRestException) as caught:
        _create(sandbox)

    assert (caught.value.status, caught.value.code) == (http_status, code)
    assert sandbox.control.accepts().total == 0
    _create(sandbox, to=OTHER)  # other numbers are unaffected
    assert sandbox.control.accepts().count(OTHER) == 1


def test_a_counted_fault_applies_to_the_next_matches_only(sandbox: RunningSandbox) -> None:
    sandbox.control.inject("error", code=20429, count=2)

    outcomes = []
    for _ in range(3):
        try:
            _create(sandbox)
            outcomes.append("accepted")
        except TwilioRestException as exc:
            outcomes.append(str(exc.code))

    assert outcomes == ["20429", "20429", "accepted"]


def test_a_rate_fault_hits_about_that_share_and_is_reproducible_with_a_seed(sandbox: RunningSandbox) -> None:
    def run() -> list[bool]:
        sandbox.control.reset(seed=7)
        sandbox.control.inject("error", code=20500, rate=0.3)
        hits = []
        for i in range(60):
            try:
                _create(sandbox, body=f"m{i}")
                hits.append(False)
            except TwilioRestException:
                hits.append(True)
        return hits

    first = run()
    assert 8 <= sum(first) <= 30
    assert run() == first
    assert sandbox.control.accepts().total == 60 - sum(first)


def test_a_500_after_acceptance_records_the_message_anyway(sandbox: RunningSandbox) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    sandbox.control.inject("error", code=20500, accept=True, count=1)

    with pytest.raises(TwilioRestException):
        _create(sandbox)

    assert sandbox.control.accepts().count(PATIENT) == 1
    assert len(sandbox.twilio_client().messages.list(to=PATIENT, date_sent_after=since)) == 1


def test_latency_delays_the_answer(sandbox: RunningSandbox) -> None:
    sandbox.control.inject("latency", seconds=0.4, to=PATIENT)

    started = time.monotonic()
    _create(sandbox)

    assert time.monotonic() - started >= 0.4


def test_a_hang_times_the_client_out_yet_the_message_was_accepted_and_can_be_reconciled(
    sandbox: RunningSandbox,
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    sandbox.control.inject("hang", to=PATIENT, seconds=30, count=1)

    with pytest.raises(requests.exceptions.ReadTimeout):
        _create(sandbox, timeout=0.5)

    assert sandbox.control.accepts().count(PATIENT, "Reminder") == 1
    found = sandbox.twilio_client().messages.list(to=PATIENT, date_sent_after=since)
    assert [m.body for m in found] == ["Reminder"]
    assert sandbox.control.release_hangs() == 1


def test_an_opted_out_number_gets_21610_until_it_opts_back_in(sandbox: RunningSandbox) -> None:
    sandbox.control.opt_out(PATIENT)

    with pytest.raises(TwilioRestException) as caught:
        _create(sandbox)
    assert caught.value.code == 21610

    sandbox.control.opt_in(PATIENT)
    _create(sandbox)
    assert sandbox.control.accepts().count(PATIENT) == 1


def test_bad_fault_rules_are_refused_with_the_field_named(sandbox: RunningSandbox) -> None:
    with pytest.raises(SandboxControlError, match="code for an error"):
        sandbox.control.inject("error", code=12345)
    with pytest.raises(SandboxControlError, match="rate"):
        sandbox.control.inject("delivery", code=30003, rate=2.0)


def test_faults_can_be_removed_and_reset_clears_them(sandbox: RunningSandbox) -> None:
    fault = sandbox.control.inject("error", code=21211)
    sandbox.control.remove_fault(fault)
    _create(sandbox)

    sandbox.control.inject("error", code=21211)
    sandbox.control.reset()
    _create(sandbox)

    assert sandbox.control.accepts().total == 1


def test_refused_creates_are_kept_as_evidence_with_their_code_and_time(sandbox: RunningSandbox) -> None:
    sandbox.control.opt_out(PATIENT)
    opted_out_at = sandbox.control.opt_outs()[0]["monotonic"]

    with pytest.raises(TwilioRestException):
        _create(sandbox)

    [rejection] = sandbox.control.rejections(to=PATIENT)
    assert rejection["code"] == 21610
    assert rejection["monotonic"] > opted_out_at
    assert sandbox.control.rejections(to=OTHER) == []
