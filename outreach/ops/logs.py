"""Logging for every process: one line per event, JSON (for a log shipper) or text (for a
terminal), with the message, contact, inbound and Celery task ids when there are any, and never
a phone number, an email address, a name or a message body.

Our own log calls name rows by id. Libraries are another matter: at DEBUG the twilio client
logs request bodies (To, Body), SQLAlchemy logs bound parameters and httpx logs URLs that can
carry a phone number in a query string. Those loggers are held at WARNING whatever the level
asked for, and every line passes through ``redact`` as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from outreach.config import Settings

# Libraries whose DEBUG and INFO output can quote patient data (request bodies, SQL parameters,
# URLs, SMTP conversations).
CHATTY_LIBRARIES = (
    "twilio",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "httpx",
    "httpcore",
    "urllib3",
    "uvicorn.access",
    "mail.log",
    "aiosmtpd",
)
# Ids a log call may pass as ``extra={...}``; they become JSON fields.
ID_FIELDS = ("message_id", "contact_id", "inbound_id", "inbox_item_id", "task_id")

_E164 = re.compile(r"\+\d{8,15}\b")
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


def redact(text: str) -> str:
    return _EMAIL.sub("[email]", _E164.sub("[phone]", text))


def _task_id() -> str | None:
    from celery import current_task

    request = getattr(current_task, "request", None) if current_task else None
    task_id = getattr(request, "id", None)
    return str(task_id) if task_id else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if "task_id" not in line and (task_id := _task_id()):
            line["task_id"] = task_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in ID_FIELDS if hasattr(record, name))
        return redact(f"{text} [{ids}]" if ids else text)


def configure(settings: Settings, level: str | int | None = None) -> None:
    """Set up the root logger for this process (an entry point calls it once, before work).

    ``level`` is what the command line asked for (Celery's ``--loglevel``); OUTREACH_LOG_LEVEL,
    when set, wins over it.
    """
    if "log_level" in settings.model_fields_set or level is None:
        level = settings.log_level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # Celery and uvicorn add handlers of their own to some loggers; send everything to ours.
    for name in ("celery", "celery.task", "celery.redirected", "uvicorn", "uvicorn.error", "kombu"):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
