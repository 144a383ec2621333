"""Fake phones: replies become signed inbound webhooks; Twilio's keyword handling; the pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from outreach.sandbox.formats import AUTO_REPLIES
from tests.support.sandbox import RunningSandbox, WebhookReceiver, running_sandbox

PATIENT = "+14155550131"
CLINIC = "+15005550006"


@pytest.fixture
def sandbox(receiver: WebhookReceiver) -> Iterator[RunningSandbox]:
    with running_sandbox(public_base_url=receiver.url, twilio_from=CLINIC) as running:
        yield running


def test_a_reply_reaches_the_app_as_a_signed_inbound_webhook(
    sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    result = sandbox.control.reply(PATIENT, "1")

    assert result.webhook_status == 200
    [post] = receiver.posts()
    assert post.path == "/webhooks/twilio/sms"
    assert post.signature_valid
    form = post.form
    assert (form["From"], form["To"], form["Body"]) == (PATIENT, CLINIC, "1")
    assert form["MessageSid"] == form["SmsSid"] == result.sid
    assert result.sid.startswith("SM") and len(result.sid) == 34
    assert (form["NumMedia"], form["NumSegments"], form["ApiVersion"]) == ("0", "1", "2010-04-01")
    assert form["AccountSid"] == sandbox.settings.twilio_account_sid
    assert "OptOutType" not in form


def test_stop_opts_the_number_out_auto_replies_and_blocks_sends_until_start(
    sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    client = sandbox.twilio_client()

    stop = sandbox.control.reply(PATIENT, " stop ")

    assert (stop.keyword, stop.auto_reply) == ("STOP", AUTO_REPLIES["STOP"])
    assert receiver.posts()[-1].form["OptOutType"] == "STOP"
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=PATIENT, from_=CLINIC, body="Reminder")
    assert caught.value.code == 21610
    conversation = sandbox.control.messages(number=PATIENT)
    assert [(m.direction, m.body) for m in conversation] == [
        ("inbound", " stop "), ("outbound-reply", AUTO_REPLIES["STOP"])
    ]

    sandbox.control.reply(PATIENT, "START")
    client.messages.create(to=PATIENT, from_=CLINIC, body="Reminder")
    assert sandbox.control.accepts().count(PATIENT) == 1


@pytest.mark.parametrize("word", ["STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"])
def test_every_twilio_opt_out_word_opts_out(sandbox: RunningSandbox, word: str) -> None:
    sandbox.control.reply(PATIENT, word.lower())

    assert [o["number"] for o in sandbox.control.opt_outs()] == [PATIENT]


def test_a_sentence_containing_stop_is_not_a_keyword(sandbox: RunningSandbox) -> None:
    result = sandbox.control.reply(PATIENT, "please stop texting me")

    assert result.keyword is None
    assert sandbox.control.opt_outs() == []


def test_auto_replies_can_be_switched_off(sandbox: RunningSandbox) -> None:
    sandbox.control.configure(auto_reply=False)

    result = sandbox.control.reply(PATIENT, "HELP")

    assert (result.keyword, result.auto_reply) == ("HELP", None)
    assert [m.direction for m in sandbox.control.messages(number=PATIENT)] == ["inbound"]


def test_an_unreachable_app_is_reported_not_raised(receiver: WebhookReceiver) -> None:
    with running_sandbox(public_base_url="http://127.0.0.1:9") as sandbox:
        result = sandbox.control.reply(PATIENT, "hello")

    assert result.webhook_status is None
    assert result.error


def test_the_phone_page_shows_the_conversation_and_the_index_lists_the_phone(
    sandbox: RunningSandbox,
) -> None:
    sandbox.twilio_client().messages.create(to=PATIENT, from_=CLINIC, body="See you at <10:00> & bring ID")
    sandbox.control.reply(PATIENT, "1")

    index = httpx.get(sandbox.http_url + "/")
    page = httpx.get(f"{sandbox.http_url}/phone/{PATIENT}")

    assert index.status_code == 200
    assert f'data-number="{PATIENT}"' in index.text
    assert page.status_code == 200
    assert "See you at &lt;10:00&gt; &amp; bring ID" in page.text  # escaped, not injected
    assert page.text.count('data-testid="message"') == 2
    assert 'data-direction="inbound"' in page.text


def test_the_reply_form_posts_the_webhook_and_shows_the_apps_answer(
    sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    receiver.status = 403

    response = httpx.post(
        f"{sandbox.http_url}/phone/{PATIENT}/reply", data={"body": "2"}, follow_redirects=True
    )

    assert receiver.posts()[-1].form["Body"] == "2"
    assert 'data-webhook-status="403"' in response.text
    assert response.url.query == b"webhook=403"  # the status only, never the text


def test_open_phone_rejects_a_non_number(sandbox: RunningSandbox) -> None:
    response = httpx.get(sandbox.http_url + "/phone", params={"number": "hello"})

    assert response.status_code == 400


@pytest.mark.parametrize("twilio_answers", [True, False])
def test_the_fake_phone_gets_one_answer_to_help_whoever_answers_it(
    receiver: WebhookReceiver, twilio_answers: bool
) -> None:
    # Twilio answers keywords exactly when the app is told it does, so the app stays silent then
    # and answers itself otherwise: one answer either way, as on a real phone.
    with running_sandbox(
        public_base_url=receiver.url, twilio_from=CLINIC, twilio_handles_opt_out=twilio_answers
    ) as sandbox:
        result = sandbox.control.reply(PATIENT, "HELP")

    assert result.auto_reply == (AUTO_REPLIES["HELP"] if twilio_answers else None)


def test_every_page_shows_the_notice_the_app_sets_and_the_mail_page_gives_no_wiring_advice(
    sandbox: RunningSandbox,
) -> None:
    sandbox.control.configure(notice="Automated messages are held: next message 08:00 Pacific — quiet hours")

    for path in ("/", f"/phone/{PATIENT}", "/mail"):
        page = httpx.get(sandbox.http_url + path).text
        assert "next message 08:00 Pacific — quiet hours" in page, path
    mail = httpx.get(sandbox.http_url + "/mail").text
    assert "No mail yet" in mail and "Point the app" not in mail
    assert sandbox.control.configure(notice="")["notice"] == ""
    assert 'data-testid="notice"' not in httpx.get(sandbox.http_url + "/").text


def test_the_phone_page_shows_times_on_the_clinics_clock_as_the_process_clock_reads(
    receiver: WebhookReceiver,
) -> None:
    night = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)  # 03:00 Pacific
    with running_sandbox(public_base_url=receiver.url, twilio_from=CLINIC, clock=night) as sandbox:
        sandbox.control.reply(PATIENT, "hello")
        page = httpx.get(f"{sandbox.http_url}/phone/{PATIENT}/conversation").text

    assert "Wed 10 Jun 2026, 03:00 Pacific" in page and "UTC" not in page
