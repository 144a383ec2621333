"""A small typed client for the sandbox's control API, for tests and benchmarks of every area.

    control = SandboxControl("http://127.0.0.1:8025")
    control.inject("error", code=21610, to="+14155550100")
    ...
    assert control.accepts().duplicates == []
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx

from outreach.tls import shared_context


class SandboxControlError(RuntimeError):
    """The control API refused a request (bad fault rule, unknown id...)."""


@dataclass(frozen=True)
class AcceptCount:
    to: str
    body: str
    count: int


@dataclass(frozen=True)
class Accepts:
    """Provider accepts (successful Messages creates) the sandbox counted since the last reset."""

    total: int
    by_to: dict[str, int]
    by_to_body: list[AcceptCount]
    duplicates: list[AcceptCount]  # (To, Body) pairs accepted more than once

    def count(self, to: str, body: str | None = None) -> int:
        if body is None:
            return self.by_to.get(to, 0)
        return sum(entry.count for entry in self.by_to_body if entry.to == to and entry.body == body)


@dataclass(frozen=True)
class SandboxMessage:
    sid: str
    direction: str  # outbound-api | outbound-reply | inbound
    to: str
    from_: str
    body: str
    status: str
    error_code: int | None
    num_segments: int
    messaging_service_sid: str | None
    status_callback: str | None
    validity_period: int | None
    accepted_at: datetime
    accepted_monotonic: float  # time.monotonic() in the sandbox process (same machine clock)
    history: list[dict[str, Any]]  # [{"status", "at", "error_code"}]
    callbacks: list[dict[str, Any]]  # [{"status", "at", "http_status", "error"}]
    webhook_status: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxMessage:
        return cls(
            sid=data["sid"],
            direction=data["direction"],
            to=data["to"],
            from_=data["from"],
            body=data["body"],
            status=data["status"],
            error_code=data["error_code"],
            num_segments=data["num_segments"],
            messaging_service_sid=data["messaging_service_sid"],
            status_callback=data["status_callback"],
            validity_period=data["validity_period"],
            accepted_at=datetime.fromisoformat(data["accepted_at"]),
            accepted_monotonic=data["accepted_monotonic"],
            history=data["history"],
            callbacks=data["callbacks"],
            webhook_status=data["webhook_status"],
        )

    @property
    def statuses(self) -> list[str]:
        return [change["status"] for change in self.history]


@dataclass(frozen=True)
class ReplyResult:
    sid: str
    webhook_url: str
    webhook_status: int | None  # the app's HTTP answer; None if unreachable
    error: str | None
    keyword: str | None
    auto_reply: str | None


@dataclass(frozen=True)
class SandboxMail:
    id: int
    received_at: datetime
    received_monotonic: float
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    from_: str | None
    to: str | None
    message_id: str | None
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    attachments: list[dict[str, Any]]  # [{"filename", "content_type", "size"}]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxMail:
        return cls(
            id=data["id"],
            received_at=datetime.fromisoformat(data["received_at"]),
            received_monotonic=data["received_monotonic"],
            mail_from=data["mail_from"],
            rcpt_tos=data["rcpt_tos"],
            subject=data["subject"],
            from_=data["from"],
            to=data["to"],
            message_id=data["message_id"],
            headers=[(k, v) for k, v in data["headers"]],
            text=data["text"],
            html=data["html"],
            attachments=data["attachments"],
        )

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


SmsFaultKind = Literal["error", "delivery", "latency", "hang"]
MailFaultStage = Literal["rcpt", "data", "drop"]


class SandboxControl:
    def __init__(self, base_url: str, *, client: httpx.Client | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.Client(
            base_url=self.base_url, timeout=timeout, verify=shared_context()
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, json: dict[str, Any] | None = None, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        response = self._client.request(method, "/_sandbox" + path, json=json, params=query or None)
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise SandboxControlError(f"{method} {path}: HTTP {response.status_code}: {detail}")
        return response.json()

    # Lifecycle and behaviour.
    def health(self) -> bool:
        try:
            return bool(self._call("GET", "/health").get("ok"))
        except httpx.HTTPError:
            return False

    def reset(self, seed: int | None = None) -> None:
        """Forget messages, counts, opt-outs, faults and mail; answer held requests."""
        self._call("POST", "/reset", json={} if seed is None else {"seed": seed})

    def configure(
        self,
        *,
        callback_delay: float | None = None,
        status_callbacks: bool | None = None,
        auto_reply: bool | None = None,
        notice: str | None = None,
    ) -> dict[str, Any]:
        changes = {
            "callback_delay": callback_delay,
            "status_callbacks": status_callbacks,
            "auto_reply": auto_reply,
            "notice": notice,
        }
        result: dict[str, Any] = self._call(
            "PUT", "/config", json={k: v for k, v in changes.items() if v is not None}
        )
        return result

    # Evidence.
    def accepts(self) -> Accepts:
        data = self._call("GET", "/accepts")
        by_body = [AcceptCount(e["to"], e["body"], e["count"]) for e in data["by_to_body"]]
        return Accepts(
            total=data["total"],
            by_to=data["by_to"],
            by_to_body=by_body,
            duplicates=[e for e in by_body if e.count > 1],
        )

    def messages(self, number: str | None = None) -> list[SandboxMessage]:
        """Every message, oldest first; with ``number``, that fake phone's conversation."""
        data = self._call("GET", "/messages", number=number)
        return [SandboxMessage.from_json(m) for m in data["messages"]]

    def message(self, sid: str) -> SandboxMessage:
        data = self._call("GET", "/messages", sid=sid)
        if not data["messages"]:
            raise SandboxControlError(f"no message {sid}")
        return SandboxMessage.from_json(data["messages"][0])

    def rejections(self, to: str | None = None) -> list[dict[str, Any]]:
        """Creates the sandbox refused: [{"to", "code", "at", "monotonic"}], oldest first."""
        result: list[dict[str, Any]] = self._call("GET", "/rejections", to=to)["rejections"]
        return result

    # Faults.
    def inject(
        self,
        kind: SmsFaultKind,
        *,
        code: int | None = None,
        to: str | None = None,
        rate: float = 1.0,
        count: int | None = None,
        seconds: float | None = None,
        status: Literal["undelivered", "failed"] | None = None,
        accept: bool = False,
    ) -> str:
        """Add an SMS fault rule; returns its id. See ``outreach.sandbox.faults`` for the kinds."""
        rule: dict[str, Any] = {"kind": kind, "to": to, "rate": rate, "count": count, "accept": accept}
        if code is not None:
            rule["code"] = code
        if seconds is not None:
            rule["seconds"] = seconds
        if status is not None:
            rule["status"] = status
        return str(self._call("POST", "/faults", json=rule)["id"])

    def remove_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"/faults/{fault_id}")

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def release_hangs(self) -> int:
        return int(self._call("POST", "/hangs/release")["released"])

    # Opt-outs and fake phones.
    def opt_out(self, number: str) -> None:
        self._call("PUT", "/opt-outs/" + quote(number, safe="+"))

    def opt_in(self, number: str) -> None:
        self._call("DELETE", "/opt-outs/" + quote(number, safe="+"))

    def opt_outs(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/opt-outs")["opt_outs"]
        return result

    def reply(self, number: str, body: str) -> ReplyResult:
        """Text the clinic from ``number``: a signed inbound webhook to the app."""
        data = self._call("POST", "/phones/" + quote(number, safe="+") + "/reply", json={"body": body})
        return ReplyResult(
            sid=data["sid"],
            webhook_url=data["webhook_url"],
            webhook_status=data["webhook_status"],
            error=data["error"],
            keyword=data["keyword"],
            auto_reply=data["auto_reply"],
        )

    def phones(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/phones")["phones"]
        return result

    # Mail.
    def mail(self) -> list[SandboxMail]:
        return [SandboxMail.from_json(m) for m in self._call("GET", "/mail")["mail"]]

    def mail_accepts(self) -> dict[str, Any]:
        """{"total", "by_recipient", "by_recipient_subject": [...], "duplicates": [...]}."""
        result: dict[str, Any] = self._call("GET", "/mail/accepts")
        return result

    def inject_mail(
        self,
        stage: MailFaultStage = "rcpt",
        *,
        recipient: str | None = None,
        code: int = 451,
        message: str | None = None,
        rate: float = 1.0,
        count: int | None = None,
    ) -> str:
        rule: dict[str, Any] = {
            "stage": stage, "recipient": recipient, "code": code, "rate": rate, "count": count,
        }
        if message is not None:
            rule["message"] = message
        return str(self._call("POST", "/mail/faults", json=rule)["id"])

    def clear_mail_faults(self) -> None:
        self._call("DELETE", "/mail/faults")
