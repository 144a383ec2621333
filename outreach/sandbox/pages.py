"""Server-rendered pages: the index, a fake phone per number, and the mail inbox.

Plain HTML from Jinja templates (autoescaped), a few lines of script to refresh the phone's
conversation, stable ``id`` / ``data-testid`` attributes for browser tests. Phone numbers in
these URLs are fake sandbox data; the production app never puts a number in a URL.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from outreach import timefmt
from outreach.sandbox.formats import E164
from outreach.sandbox.inbound import InboundSender
from outreach.sandbox.state import SandboxState

STATIC = Path(__file__).parent / "static"
# The mail page shows untrusted HTML in a sandboxed iframe; nothing else may load from elsewhere.
PAGE_CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
    "frame-src 'self'"
)


def _phone_url(number: str) -> str:
    return "/phone/" + quote(number, safe="+")


class Pages:
    def __init__(
        self,
        state: SandboxState,
        inbound: InboundSender,
        smtp_address: str,
        zone: ZoneInfo,
    ) -> None:
        self._state = state
        self._smtp_address = smtp_address
        self._inbound = inbound
        self._env = Environment(
            loader=FileSystemLoader(STATIC), autoescape=select_autoescape(["html"]), auto_reload=False
        )
        self._env.globals["phone_url"] = _phone_url
        # Times as the clinic's staff read them everywhere (outreach.timefmt).
        self._env.filters["local_time"] = lambda value: timefmt.local(datetime.fromisoformat(value), zone)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/static/sandbox.css", self.css, methods=["GET"]),
            Route("/phone", self.open_phone, methods=["GET"]),
            Route("/phone/{number}", self.phone, methods=["GET"]),
            Route("/phone/{number}/conversation", self.conversation, methods=["GET"]),
            Route("/phone/{number}/reply", self.reply, methods=["POST"]),
            Route("/mail", self.mail_list, methods=["GET"]),
            Route("/mail/{mail_id:int}", self.mail_detail, methods=["GET"]),
            Route("/mail/{mail_id:int}/raw", self.mail_raw, methods=["GET"]),
        ]

    def _render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("notice", self._state.config.notice)
        html = self._env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": PAGE_CSP})

    async def css(self, request: Request) -> Response:
        return FileResponse(STATIC / "sandbox.css", media_type="text/css")

    async def index(self, request: Request) -> Response:
        with self._state.lock:
            faults = [f.to_json() for f in self._state.sms_faults]
        return self._render(
            "index.html",
            phones=self._state.phones(),
            mail=list(reversed(self._state.mailbox.all()))[:20],
            faults=faults,
            mail_faults=[f.to_json() for f in self._state.mailbox.faults()],
            config=self._state.config,
            clinic_number=self._inbound.clinic_number,
            webhook_url=self._inbound.webhook_url,
        )

    async def open_phone(self, request: Request) -> Response:
        number = request.query_params.get("number", "").strip().replace(" ", "")
        if not E164.match(number):
            return self._render("index_error.html", status=400, problem="Enter a number like +14155550100.")
        return RedirectResponse(_phone_url(number), status_code=303)

    def _conversation(self, number: str) -> list[dict[str, Any]]:
        return self._state.control_view(phone=number)

    async def phone(self, request: Request) -> Response:
        number = request.path_params["number"]
        if not E164.match(number):
            return self._render("index_error.html", status=404, problem="Not a phone number.")
        webhook = request.query_params.get("webhook")
        return self._render(
            "phone.html",
            number=number,
            messages=self._conversation(number),
            opted_out=self._state.is_opted_out(number),
            clinic_number=self._inbound.clinic_number,
            webhook_url=self._inbound.webhook_url,
            webhook=webhook,
        )

    async def conversation(self, request: Request) -> Response:
        number = request.path_params["number"]
        return self._render(
            "conversation.html",
            messages=self._conversation(number),
            opted_out=self._state.is_opted_out(number),
        )

    async def reply(self, request: Request) -> Response:
        number = request.path_params["number"]
        form = await request.form()
        body = str(form.get("body", "")).strip()
        if not E164.match(number) or not body:
            return RedirectResponse(_phone_url(number) + "?webhook=empty", status_code=303)
        outcome = await run_in_threadpool(self._inbound.reply, number, body)
        result = str(outcome.webhook_status) if outcome.webhook_status is not None else "unreachable"
        # Only the HTTP status travels in the URL, never the text.
        return RedirectResponse(_phone_url(number) + "?webhook=" + result, status_code=303)

    async def mail_list(self, request: Request) -> Response:
        return self._render(
            "mail_list.html", mail=list(reversed(self._state.mailbox.all())), smtp_address=self._smtp_address
        )

    async def mail_detail(self, request: Request) -> Response:
        record = self._state.mailbox.get(request.path_params["mail_id"])
        if record is None:
            return self._render("index_error.html", status=404, problem="No such mail.")
        return self._render("mail_detail.html", mail=record)

    async def mail_raw(self, request: Request) -> Response:
        record = self._state.mailbox.get(request.path_params["mail_id"])
        if record is None:
            return Response("no such mail", status_code=404, media_type="text/plain")
        return Response(record.raw, media_type="text/plain; charset=utf-8")
