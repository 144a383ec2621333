"""The fake phone in a real browser: see the clinic's text, reply, the app gets a signed webhook."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.sandbox import RunningSandbox, WebhookReceiver, running_sandbox
from tests.support.waiting import wait_for

pytestmark = pytest.mark.browser

PATIENT = "+14155550151"
CLINIC = "+15005550006"


@pytest.fixture
def sandbox(receiver: WebhookReceiver) -> Iterator[RunningSandbox]:
    with running_sandbox(
        public_base_url=receiver.url, twilio_from=CLINIC, sandbox_callback_delay=0.3
    ) as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[object]:
    opened = browser.new_page()
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.real_timers
def test_a_reply_typed_on_the_phone_page_reaches_the_app_signed(
    sandbox: RunningSandbox, receiver: WebhookReceiver, page: object
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    sandbox.twilio_client().messages.create(
        to=PATIENT, from_=CLINIC, body="Reminder: Tue 10:00 at Bay Area Wellness. Reply 1 to confirm."
    )

    page.goto(f"{sandbox.http_url}/phone/{PATIENT}")
    outbound = page.locator('[data-testid="message"][data-direction="outbound-api"]')
    expect(outbound).to_have_count(1)
    expect(outbound.locator('[data-testid="message-body"]')).to_contain_text("Reply 1 to confirm")
    # The page refreshes itself as status callbacks move the message on.
    expect(outbound.locator('[data-testid="message-status"]')).to_have_text("delivered", timeout=10_000)

    page.fill("#reply-body", "1")
    page.click("#reply-send")

    expect(page.locator("#reply-result")).to_have_attribute("data-webhook-status", "200")
    [webhook] = wait_for(lambda: receiver.posts("/webhooks/twilio/sms"), what="the inbound webhook")
    assert webhook.signature_valid
    assert (webhook.form["From"], webhook.form["To"], webhook.form["Body"]) == (PATIENT, CLINIC, "1")
    expect(page.locator('[data-testid="message"][data-direction="inbound"]')).to_have_count(1)


def test_the_index_opens_a_phone_by_number(sandbox: RunningSandbox, page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(sandbox.http_url + "/")
    page.fill("#open-phone-number", PATIENT)
    page.click('[data-testid="open-phone"]')

    expect(page.locator('[data-testid="phone-number"]')).to_have_text(PATIENT)
    expect(page.locator('[data-testid="no-messages"]')).to_be_visible()
