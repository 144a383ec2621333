"""The sandbox's JSON control API under ``/_sandbox``: evidence, fault injection, fake replies.

No authentication: the sandbox listens on loopback and holds fake data only.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from outreach.sandbox.callbacks import StatusProgression
from outreach.sandbox.faults import FaultError, parse_mail_fault, parse_sms_fault
from outreach.sandbox.formats import E164
from outreach.sandbox.inbound import InboundSender
from outreach.sandbox.state import SandboxState

# A banner line, not a document.
MAX_NOTICE = 300


def _problem(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    document = json.loads(raw)
    if not isinstance(document, dict):
        raise FaultError("the request body must be a JSON object")
    return document


class ControlApi:
    def __init__(self, state: SandboxState, progression: StatusProgression, inbound: InboundSender) -> None:
        self._state = state
        self._progression = progression
        self._inbound = inbound

    def routes(self) -> list[BaseRoute]:
        p = "/_sandbox"
        return [
            Route(f"{p}/health", self.health, methods=["GET"]),
            Route(f"{p}/config", self.get_config, methods=["GET"]),
            Route(f"{p}/config", self.put_config, methods=["PUT"]),
            Route(f"{p}/reset", self.reset, methods=["POST"]),
            Route(f"{p}/accepts", self.accepts, methods=["GET"]),
            Route(f"{p}/messages", self.messages, methods=["GET"]),
            Route(f"{p}/rejections", self.rejections, methods=["GET"]),
            Route(f"{p}/faults", self.list_faults, methods=["GET"]),
            Route(f"{p}/faults", self.add_fault, methods=["POST"]),
            Route(f"{p}/faults", self.clear_faults, methods=["DELETE"]),
            Route(f"{p}/faults/{{fault_id}}", self.remove_fault, methods=["DELETE"]),
            Route(f"{p}/hangs/release", self.release_hangs, methods=["POST"]),
            Route(f"{p}/opt-outs", self.opt_outs, methods=["GET"]),
            Route(f"{p}/opt-outs/{{number}}", self.opt_out, methods=["PUT"]),
            Route(f"{p}/opt-outs/{{number}}", self.opt_in, methods=["DELETE"]),
            Route(f"{p}/phones", self.phones, methods=["GET"]),
            Route(f"{p}/phones/{{number}}/reply", self.reply, methods=["POST"]),
            Route(f"{p}/mail", self.mail, methods=["GET"]),
            Route(f"{p}/mail/accepts", self.mail_accepts, methods=["GET"]),
            Route(f"{p}/mail/faults", self.list_mail_faults, methods=["GET"]),
            Route(f"{p}/mail/faults", self.add_mail_fault, methods=["POST"]),
            Route(f"{p}/mail/faults", self.clear_mail_faults, methods=["DELETE"]),
            Route(f"{p}/mail/{{mail_id:int}}", self.mail_one, methods=["GET"]),
        ]

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def get_config(self, request: Request) -> Response:
        return JSONResponse(self._state.config.to_json())

    async def put_config(self, request: Request) -> Response:
        try:
            body = await _json_body(request)
        except (ValueError, FaultError) as exc:
            return _problem(str(exc))
        config = self._state.config
        if "callback_delay" in body:
            delay = body["callback_delay"]
            if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
                return _problem("callback_delay must be a number >= 0")
            config.callback_delay = float(delay)
        if "notice" in body:
            notice = body["notice"]
            if not isinstance(notice, str) or len(notice) > MAX_NOTICE:
                return _problem(f"notice must be text of at most {MAX_NOTICE} characters")
            config.notice = notice.strip()
        for flag in ("status_callbacks", "auto_reply"):
            if flag in body:
                if not isinstance(body[flag], bool):
                    return _problem(f"{flag} must be true or false")
                setattr(config, flag, body[flag])
        return JSONResponse(config.to_json())

    async def reset(self, request: Request) -> Response:
        try:
            body = await _json_body(request)
        except (ValueError, FaultError) as exc:
            return _problem(str(exc))
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            return _problem("seed must be an integer")
        self._progression.clear()
        self._state.reset(seed)
        self._state.release_hangs()
        return JSONResponse({"ok": True})

    async def accepts(self, request: Request) -> Response:
        return JSONResponse(self._state.accepts())

    async def messages(self, request: Request) -> Response:
        sid = request.query_params.get("sid")
        number = request.query_params.get("number")
        return JSONResponse({"messages": self._state.control_view(sid=sid, phone=number)})

    async def rejections(self, request: Request) -> Response:
        to = request.query_params.get("to")
        return JSONResponse({"rejections": self._state.rejection_view(to)})

    async def list_faults(self, request: Request) -> Response:
        with self._state.lock:
            faults = [f.to_json() for f in self._state.sms_faults]
        return JSONResponse({"faults": faults})

    async def add_fault(self, request: Request) -> Response:
        try:
            fault = parse_sms_fault(await _json_body(request))
        except (ValueError, FaultError) as exc:
            return _problem(str(exc))
        self._state.add_sms_fault(fault)
        return JSONResponse(fault.to_json(), status_code=201)

    async def clear_faults(self, request: Request) -> Response:
        with self._state.lock:
            self._state.sms_faults.clear()
        return JSONResponse({"ok": True})

    async def remove_fault(self, request: Request) -> Response:
        if not self._state.remove_sms_fault(request.path_params["fault_id"]):
            return _problem("no such fault", 404)
        return JSONResponse({"ok": True})

    async def release_hangs(self, request: Request) -> Response:
        held = len(self._state.hangs)
        self._state.release_hangs()
        return JSONResponse({"released": held})

    async def opt_outs(self, request: Request) -> Response:
        return JSONResponse({"opt_outs": self._state.opt_out_view()})

    async def opt_out(self, request: Request) -> Response:
        number = request.path_params["number"]
        if not E164.match(number):
            return _problem("number must be an E.164 phone number")
        self._state.set_opted_out(number, True)
        return JSONResponse({"number": number, "opted_out": True})

    async def opt_in(self, request: Request) -> Response:
        number = request.path_params["number"]
        self._state.set_opted_out(number, False)
        return JSONResponse({"number": number, "opted_out": False})

    async def phones(self, request: Request) -> Response:
        return JSONResponse({"phones": self._state.phones()})

    async def reply(self, request: Request) -> Response:
        try:
            body = await _json_body(request)
        except (ValueError, FaultError) as exc:
            return _problem(str(exc))
        text = body.get("body")
        if not isinstance(text, str) or not text:
            return _problem("body must be a non-empty string")
        try:
            outcome = await run_in_threadpool(self._inbound.reply, request.path_params["number"], text)
        except ValueError as exc:
            return _problem(str(exc))
        return JSONResponse(outcome.to_json())

    async def mail(self, request: Request) -> Response:
        return JSONResponse({"mail": [m.to_json() for m in self._state.mailbox.all()]})

    async def mail_one(self, request: Request) -> Response:
        record = self._state.mailbox.get(request.path_params["mail_id"])
        if record is None:
            return _problem("no such mail", 404)
        return JSONResponse(record.to_json())

    async def mail_accepts(self, request: Request) -> Response:
        return JSONResponse(self._state.mailbox.accepts())

    async def list_mail_faults(self, request: Request) -> Response:
        return JSONResponse({"faults": [f.to_json() for f in self._state.mailbox.faults()]})

    async def add_mail_fault(self, request: Request) -> Response:
        try:
            fault = parse_mail_fault(await _json_body(request))
        except (ValueError, FaultError) as exc:
            return _problem(str(exc))
        self._state.mailbox.add_fault(fault)
        return JSONResponse(fault.to_json(), status_code=201)

    async def clear_mail_faults(self, request: Request) -> Response:
        for fault in self._state.mailbox.faults():
            self._state.mailbox.remove_fault(fault.id)
        return JSONResponse({"ok": True})
