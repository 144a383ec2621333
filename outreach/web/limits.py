"""A cap on request bodies, applied before any route reads one.

Without it a 30 MB post to a webhook is parsed in full before the signature check refuses it.
The body is read here up to the cap (``Content-Length`` when given, counted bytes otherwise)
and handed on; over the cap the answer is 413 and the route never runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Twilio's largest webhook (an MMS with ten media URLs and every optional field) is a few KB.
WEBHOOK_BODY_MAX = 64 * 1024
# Everything else: forms and JSON, possibly a CSV upload from a staff page.
DEFAULT_BODY_MAX = 10 * 1024 * 1024
PATH_LIMITS: Mapping[str, int] = {"/webhooks/": WEBHOOK_BODY_MAX, "/unsubscribe/": WEBHOOK_BODY_MAX}


def limit_for(path: str) -> int:
    for prefix, limit in PATH_LIMITS.items():
        if path.startswith(prefix):
            return limit
    return DEFAULT_BODY_MAX


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``limit_for(path)``; otherwise the body unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                # After the body, the app may wait for a disconnect (streaming responses).
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    text = f"request body too large (the limit here is {limit // 1024} KB)".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(text)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": text})
