"""Mail the SMTP sink received, parsed for the inbox page and the control API."""

from __future__ import annotations

import email
import email.policy
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from outreach.sandbox.faults import MailFault, MailFaultStage


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str | None
    content_type: str
    size: int


@dataclass
class MailRecord:
    id: int
    received_at: datetime
    received_monotonic: float
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    subject: str
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    attachments: list[AttachmentInfo] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "received_monotonic": self.received_monotonic,
            "mail_from": self.mail_from,
            "rcpt_tos": self.rcpt_tos,
            "subject": self.subject,
            "from": self.header("From"),
            "to": self.header("To"),
            "message_id": self.header("Message-ID"),
            "headers": [[k, v] for k, v in self.headers],
            "text": self.text,
            "html": self.html,
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                for a in self.attachments
            ],
        }


def parse_mail(raw: bytes) -> tuple[str, list[tuple[str, str]], str | None, str | None, list[AttachmentInfo]]:
    """Subject, headers, first text part, first HTML part and the attachments of a message."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    headers = [(key, str(value)) for key, value in message.items()]
    text: str | None = None
    html: str | None = None
    attachments: list[AttachmentInfo] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        if part.is_attachment() or part.get_filename():
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            attachments.append(AttachmentInfo(part.get_filename(), content_type, size))
        elif content_type == "text/plain" and text is None:
            text = str(part.get_content())
        elif content_type == "text/html" and html is None:
            html = str(part.get_content())
    return str(message.get("Subject", "")), headers, text, html, attachments


class Mailbox:
    """Received mail plus mail fault rules; thread-safe (the SMTP server runs in its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset(None)

    def reset(self, seed: int | None) -> None:
        with self._lock:
            self._mail: list[MailRecord] = []
            self._accepts: Counter[tuple[str, str]] = Counter()
            self._faults: list[MailFault] = []
            self._rng = random.Random(seed)

    def add_fault(self, fault: MailFault) -> None:
        with self._lock:
            self._faults.append(fault)

    def remove_fault(self, fault_id: str) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def faults(self) -> list[MailFault]:
        with self._lock:
            return list(self._faults)

    def decide(self, stage: MailFaultStage, recipients: list[str]) -> MailFault | None:
        """The first rule of this stage that hits any of the recipients; uses up counted rules."""
        with self._lock:
            for fault in list(self._faults):
                if fault.stage != stage or not any(fault.matches(r) for r in recipients):
                    continue
                if fault.rate < 1.0 and self._rng.random() >= fault.rate:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def store(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> MailRecord:
        subject, headers, text, html, attachments = parse_mail(raw)
        with self._lock:
            record = MailRecord(
                id=len(self._mail) + 1,
                received_at=datetime.now(UTC),
                received_monotonic=time.monotonic(),
                mail_from=mail_from,
                rcpt_tos=list(rcpt_tos),
                raw=raw,
                subject=subject,
                headers=headers,
                text=text,
                html=html,
                attachments=attachments,
            )
            self._mail.append(record)
            for rcpt in rcpt_tos:
                self._accepts[(rcpt.lower(), subject)] += 1
            return record

    def all(self) -> list[MailRecord]:
        with self._lock:
            return list(self._mail)

    def get(self, mail_id: int) -> MailRecord | None:
        with self._lock:
            if 1 <= mail_id <= len(self._mail):
                return self._mail[mail_id - 1]
            return None

    def accepts(self) -> dict[str, Any]:
        with self._lock:
            by_subject: list[dict[str, Any]] = [
                {"recipient": rcpt, "subject": subject, "count": n}
                for (rcpt, subject), n in self._accepts.items()
            ]
            by_recipient: Counter[str] = Counter()
            for (rcpt, _subject), n in self._accepts.items():
                by_recipient[rcpt] += n
            return {
                "total": len(self._mail),
                "by_recipient": dict(by_recipient),
                "by_recipient_subject": by_subject,
                "duplicates": [entry for entry in by_subject if entry["count"] > 1],
            }
