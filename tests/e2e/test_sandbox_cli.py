"""`outreach sandbox` as a process: starts on the configured ports, serves, reports a busy port."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
from email.message import EmailMessage

from tests.support.processes import free_port
from tests.support.sandbox import running_sandbox


def test_the_cli_runs_the_api_and_the_smtp_sink_in_one_process() -> None:
    with running_sandbox(mode="process") as sandbox:
        created = sandbox.twilio_client().messages.create(to="+14155550161", from_="+15005550006", body="hi")
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.org", "Hello"
        message.set_content("hi")
        with smtplib.SMTP(sandbox.smtp_host, sandbox.smtp_port, timeout=10) as smtp:
            smtp.send_message(message)

        assert sandbox.control.message(created.sid).to == "+14155550161"
        assert [m.subject for m in sandbox.control.mail()] == ["Hello"]


def test_a_busy_port_is_a_one_line_error_not_a_traceback() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-c", "from outreach.cli.app import main; main()", "sandbox",
             "--http-port", str(port), "--smtp-port", str(free_port())],
            capture_output=True, text=True, timeout=60,
        )

    assert result.returncode != 0
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr
