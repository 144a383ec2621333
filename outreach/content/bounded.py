"""Jinja's sandbox with limits on output size and rendering time.

The sandbox stops templates reaching Python's internals, not from exhausting the worker:
``{{ "x" * 10**9 }}``, ``{{ 9**9**9 }}`` or nested loops would hold a send task (and the batch
queued behind it) for minutes or kill it. Here output is counted as it is produced, the clock is
checked at every call and loop step, and the arithmetic that can explode is checked before it
runs. Any breach raises ``RenderLimitExceeded``; the caller turns it into a failed message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import Template
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

# Far beyond any message (an SMS is at most 1,600 characters; our longest email a few KB).
MAX_OUTPUT_CHARS = 200_000
# A template renders in milliseconds; this is for the hostile or broken one.
MAX_RENDER_SECONDS = 2.0
# Integer powers beyond this many bits are junk in a message (and cost seconds to compute).
MAX_POWER_BITS = 4096


class RenderLimitExceeded(Exception):
    """A template produced too much output, took too long, or asked for a giant value."""


_deadline = threading.local()


def _check_clock() -> None:
    deadline: float | None = getattr(_deadline, "at", None)
    if deadline is not None and time.monotonic() > deadline:
        raise RenderLimitExceeded(f"rendering took longer than {MAX_RENDER_SECONDS:g} seconds")


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_clock()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_clock()
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator == "**" and _power_bits(left, right) > MAX_POWER_BITS:
            raise RenderLimitExceeded("a power in the template is too large")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _check_clock()
        return super().getattr(obj, attribute)


def _check_repeat(sequence: Any, times: Any) -> None:
    sized = isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int)
    if sized and len(sequence) * times > MAX_OUTPUT_CHARS:
        raise RenderLimitExceeded(f"a repeated value is over {MAX_OUTPUT_CHARS} characters")


def _power_bits(base: Any, exponent: Any) -> int:
    """Roughly how many bits ``base ** exponent`` needs (0 when it cannot grow)."""
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0 or abs(base) <= 1:
        return 0
    return exponent * abs(base).bit_length()


def render_bounded(template: Template, context: Mapping[str, Any]) -> str:
    """``template.render(context)``, within the output and time limits."""
    _deadline.at = time.monotonic() + MAX_RENDER_SECONDS
    try:
        return _collect(template.generate(context))
    finally:
        _deadline.at = None


def _collect(chunks: Iterable[str]) -> str:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        _check_clock()
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise RenderLimitExceeded(f"the output is over {MAX_OUTPUT_CHARS} characters")
        parts.append(chunk)
    return "".join(parts)
