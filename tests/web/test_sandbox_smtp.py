"""The SMTP sink: stores and parses mail, renders the inbox, injects 4xx/5xx and dropped connections."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest

from tests.support.sandbox import RunningSandbox, running_sandbox

PATIENT = "pat@example.com"
SENDER = "care@clinic.example.org"
UNSUBSCRIBE = "<https://clinic.example.org/u/tok123>, <mailto:unsubscribe@clinic.example.org?subject=tok123>"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox() as running:
        yield running


def _mail(subject: str = "Your visit on Tuesday", to: str = PATIENT) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Bay Area Wellness <{SENDER}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = "<m-1@clinic.example.org>"
    message["List-Unsubscribe"] = UNSUBSCRIBE
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content("See you Tuesday at 10:00.")
    message.add_alternative("<p>See you <b>Tuesday</b> at 10:00.</p><script>alert(1)</script>",
                            subtype="html")
    message.add_attachment(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", maintype="text", subtype="calendar",
                           filename="visit.ics")
    return message


def _send(sandbox: RunningSandbox, message: EmailMessage) -> None:
    with smtplib.SMTP(sandbox.smtp_host, sandbox.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)


def test_received_mail_is_parsed_into_parts_headers_and_attachments(sandbox: RunningSandbox) -> None:
    _send(sandbox, _mail())

    [mail] = sandbox.control.mail()

    assert mail.rcpt_tos == [PATIENT]
    assert mail.subject == "Your visit on Tuesday"
    assert mail.header("List-Unsubscribe") == UNSUBSCRIBE
    assert mail.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert mail.message_id == "<m-1@clinic.example.org>"
    assert mail.text is not None and "Tuesday at 10:00" in mail.text
    assert mail.html is not None and "<b>Tuesday</b>" in mail.html
    assert [(a["filename"], a["content_type"]) for a in mail.attachments] == [("visit.ics", "text/calendar")]


def test_mail_accepts_count_per_recipient_and_subject(sandbox: RunningSandbox) -> None:
    _send(sandbox, _mail())
    _send(sandbox, _mail())
    _send(sandbox, _mail(subject="Other"))

    accepts = sandbox.control.mail_accepts()

    assert accepts["total"] == 3
    assert accepts["by_recipient"] == {PATIENT: 3}
    assert accepts["duplicates"] == [{"recipient": PATIENT, "subject": "Your visit on Tuesday", "count": 2}]


def test_the_inbox_pages_render_mail_with_html_sandboxed(sandbox: RunningSandbox) -> None:
    _send(sandbox, _mail())

    listing = httpx.get(sandbox.http_url + "/mail")
    detail = httpx.get(sandbox.http_url + "/mail/1")

    assert "Your visit on Tuesday" in listing.text
    assert 'data-header="list-unsubscribe"' in detail.text
    assert "visit.ics" in detail.text
    assert 'sandbox=""' in detail.text
    # The HTML part only appears escaped inside srcdoc, so its script cannot run in the page.
    assert "<script>alert(1)</script>" not in detail.text
    assert httpx.get(sandbox.http_url + "/mail/99").status_code == 404


@pytest.mark.parametrize("code", [450, 550])
def test_a_recipient_fault_refuses_that_recipient_only(sandbox: RunningSandbox, code: int) -> None:
    sandbox.control.inject_mail("rcpt", recipient="bad@example.com", code=code)

    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        _send(sandbox, _mail(to="bad@example.com"))
    _send(sandbox, _mail())

    assert caught.value.recipients["bad@example.com"][0] == code
    assert [m.rcpt_tos for m in sandbox.control.mail()] == [[PATIENT]]


def test_a_data_fault_rejects_the_message_and_stores_nothing(sandbox: RunningSandbox) -> None:
    sandbox.control.inject_mail("data", code=451, count=1)

    with pytest.raises(smtplib.SMTPDataError) as caught:
        _send(sandbox, _mail())

    assert caught.value.smtp_code == 451
    assert sandbox.control.mail() == []


def test_a_dropped_connection_after_data_leaves_the_mail_stored(sandbox: RunningSandbox) -> None:
    sandbox.control.inject_mail("drop", count=1)

    with pytest.raises(smtplib.SMTPServerDisconnected):
        _send(sandbox, _mail())

    assert sandbox.control.mail_accepts()["total"] == 1


def test_bad_mail_fault_rules_are_refused(sandbox: RunningSandbox) -> None:
    from outreach.sandbox.control import SandboxControlError

    with pytest.raises(SandboxControlError, match="code"):
        sandbox.control.inject_mail("rcpt", code=250)


def test_smtp_auth_is_accepted_with_the_configured_credentials_only() -> None:
    with running_sandbox(smtp_username="clinic", smtp_password="s3cret") as sandbox:
        with smtplib.SMTP(sandbox.smtp_host, sandbox.smtp_port, timeout=10) as smtp:
            smtp.login("clinic", "s3cret")
            smtp.send_message(_mail())
        with (
            smtplib.SMTP(sandbox.smtp_host, sandbox.smtp_port, timeout=10) as smtp,
            pytest.raises(smtplib.SMTPAuthenticationError),
        ):
            smtp.login("clinic", "wrong")
        assert len(sandbox.control.mail()) == 1
