"""Status callbacks: queued -> sent -> delivered, signed exactly as Twilio signs them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.support.sandbox import RunningSandbox, WebhookReceiver, running_sandbox
from tests.support.waiting import wait_for

PATIENT = "+14155550111"
CLINIC = "+15005550006"
STATUS_PATH = "/webhooks/twilio/status?d=corr-123"


@pytest.fixture
def sandbox(receiver: WebhookReceiver) -> Iterator[RunningSandbox]:
    with running_sandbox(public_base_url=receiver.url) as running:
        yield running


def _send(sandbox: RunningSandbox, receiver: WebhookReceiver, to: str = PATIENT) -> str:
    message = sandbox.twilio_client().messages.create(
        to=to, from_=CLINIC, body="Your visit is tomorrow at 10:00.",
        status_callback=receiver.url + STATUS_PATH,
    )
    return str(message.sid)


def _statuses(receiver: WebhookReceiver, count: int) -> list[str]:
    wait_for(lambda: len(receiver.posts("/webhooks/twilio/status")) >= count, what=f"{count} callbacks")
    return [p.form["MessageStatus"] for p in receiver.posts("/webhooks/twilio/status")]


def test_callbacks_arrive_queued_sent_delivered_and_signed(
    sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    sid = _send(sandbox, receiver)

    assert _statuses(receiver, 3) == ["queued", "sent", "delivered"]
    posts = receiver.posts()
    assert all(p.signature_valid for p in posts)
    assert all(p.path == STATUS_PATH for p in posts)
    first = posts[0].form
    assert first["MessageSid"] == first["SmsSid"] == sid
    assert first["AccountSid"] == sandbox.settings.twilio_account_sid
    assert (first["From"], first["To"], first["ApiVersion"]) == (CLINIC, PATIENT, "2010-04-01")
    assert "ErrorCode" not in posts[-1].form
    assert posts[-1].headers["i-twilio-idempotency-token"]
    assert sandbox.twilio_client().messages(sid).fetch().status == "delivered"


@pytest.mark.real_timers
def test_callbacks_are_spaced_by_the_configured_delay(
    sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    sandbox.control.configure(callback_delay=0.15)
    sid = _send(sandbox, receiver)
    _statuses(receiver, 3)

    history = sandbox.control.message(sid).history
    at = {h["status"]: datetime.fromisoformat(h["at"]) for h in history}

    spacing = at["delivered"] - at["sent"]
    assert spacing.total_seconds() >= 0.15


@pytest.mark.parametrize("code", [30003, 30005, 30006, 30007, 30008])
def test_a_delivery_failure_ends_undelivered_with_its_error_code(
    sandbox: RunningSandbox, receiver: WebhookReceiver, code: int
) -> None:
    sandbox.control.inject("delivery", code=code, to=PATIENT)
    sid = _send(sandbox, receiver)

    assert _statuses(receiver, 3) == ["queued", "sent", "undelivered"]
    assert receiver.posts()[-1].form["ErrorCode"] == str(code)
    fetched = sandbox.twilio_client().messages(sid).fetch()
    assert (fetched.status, fetched.error_code) == ("undelivered", code)
    assert fetched.error_message


def test_a_failed_delivery_skips_sent(sandbox: RunningSandbox, receiver: WebhookReceiver) -> None:
    sandbox.control.inject("delivery", code=30007, status="failed")
    _send(sandbox, receiver)

    assert _statuses(receiver, 2) == ["queued", "failed"]
    assert receiver.posts()[-1].form["ErrorCode"] == "30007"


@pytest.mark.real_timers
def test_a_callback_the_app_fails_is_retried_once(
    sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    receiver.status = 500
    sid = _send(sandbox, receiver)

    wait_for(lambda: len(sandbox.control.message(sid).callbacks) >= 6, what="two attempts per status")
    posts = receiver.posts()
    assert [p.form["MessageStatus"] for p in posts] == [
        "queued", "queued", "sent", "sent", "delivered", "delivered"
    ]
    # A retry carries the same idempotency token, so the app can drop it.
    assert posts[0].headers["i-twilio-idempotency-token"] == posts[1].headers["i-twilio-idempotency-token"]
    assert posts[0].headers["i-twilio-idempotency-token"] != posts[2].headers["i-twilio-idempotency-token"]


@pytest.mark.real_timers
def test_status_still_progresses_when_the_app_is_unreachable(sandbox: RunningSandbox) -> None:
    message = sandbox.twilio_client().messages.create(
        to=PATIENT, from_=CLINIC, body="x", status_callback="http://127.0.0.1:9/webhooks/twilio/status"
    )

    wait_for(lambda: sandbox.control.message(message.sid).status == "delivered", what="delivered")
    record = sandbox.control.message(message.sid)
    assert all(c["http_status"] is None and c["error"] for c in record.callbacks)


def test_with_callbacks_off_messages_reach_their_final_status_without_any_post(
    sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    sandbox.control.configure(status_callbacks=False)
    sandbox.control.inject("delivery", code=30003, to="+14155550199")

    delivered = _send(sandbox, receiver)
    undelivered = _send(sandbox, receiver, to="+14155550199")

    assert sandbox.control.message(delivered).status == "delivered"
    assert sandbox.control.message(undelivered).statuses == ["queued", "queued", "sent", "undelivered"]
    assert receiver.posts() == []
