"""Log lines: JSON or text, ids as fields, and no phone number, email address or body from our
code or from the libraries that would quote them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from outreach.config import load_settings
from outreach.ops import logs


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in logs.CHATTY_LIBRARIES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line]


def test_json_lines_carry_the_ids_as_fields_and_no_contact_details(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure(load_settings(log_format="json"), "INFO")

    logging.getLogger("outreach.delivery.send").warning(
        "could not reach %s or %s", "+14155550123", "rosa.diaz@example.org", extra={"message_id": 42}
    )

    [line] = _lines(capsys)
    record = json.loads(line)
    assert record["level"] == "warning"
    assert record["logger"] == "outreach.delivery.send"
    assert record["message_id"] == 42
    assert record["message"] == "could not reach [phone] or [email]"
    assert "time" in record and record["time"].endswith("+00:00")


def test_text_lines_are_readable_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(load_settings(log_format="text"), "INFO")

    logging.getLogger("outreach.replies.inbound").info("reply from +442071838750", extra={"inbound_id": 7})

    [line] = _lines(capsys)
    assert "INFO" in line and "outreach.replies.inbound: reply from [phone] [inbound_id=7]" in line


def test_libraries_that_quote_requests_stay_quiet_even_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(load_settings(log_format="json"), "DEBUG")

    logging.getLogger("twilio.http_client").info("POST To=+14155550123 Body=See you tomorrow, Rosa")
    logging.getLogger("sqlalchemy.engine.Engine").info("[parameters] ('See you tomorrow, Rosa',)")
    logging.getLogger("httpx").info("GET /Messages.json?To=%2B14155550123")
    logging.getLogger("outreach.delivery.send").debug("batch of 3 sent")

    lines = _lines(capsys)
    assert len(lines) == 1
    assert "batch of 3 sent" in lines[0]


def test_the_configured_level_wins_over_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(load_settings(log_format="text", log_level="warning"), "DEBUG")

    logging.getLogger("outreach").info("not shown")
    logging.getLogger("outreach").warning("shown")

    assert [line.rsplit(": ", 1)[1] for line in _lines(capsys)] == ["shown"]


def test_an_exception_is_kept_on_the_same_json_line_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(load_settings(log_format="json"), "INFO")

    try:
        raise ValueError("bad address pat@example.org")
    except ValueError:
        logging.getLogger("outreach").exception("send failed")

    [line] = _lines(capsys)
    assert "ValueError: bad address [email]" in json.loads(line)["exception"]
