"""Keep a Celery worker alive when its Redis connection is lost (kombu 5.7's Redis transport).

What happens without this: Redis restarts while a worker waits in ``BRPOP`` holding
unacknowledged tasks. Celery's consumer first ``collect()``s the broken connection: closing
its channel fails inside the pending ``BRPOP`` read (a connection error), so the channel stays
open, and the transport is then detached from the connection (its ``client`` becomes None).
Celery then ``close()``s the connection, which closes that channel again; returning the
unacknowledged tasks needs a new Redis client, whose settings are read from the detached
``client``: ``AttributeError``, which Celery calls unrecoverable, and the worker exits. The
fault matrix saw it in about one Redis restart in three, mostly on the control worker (the
one that idles in ``BRPOP``). A supervisor starts the worker again (docker-compose.yml's
restart policy), but a worker started by hand would stay down, and with it the dispatcher.

The fix: a channel whose transport is detached reports a connection error instead. Every
caller on this path already treats connection errors as "the broker is gone": the close is
finished, the tasks stay in Redis's unacknowledged set (and come back after the visibility
timeout, as after any worker loss), and the consumer reconnects.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from kombu.transport import redis as redis_transport

_PATCHED = "_outreach_detached_is_a_connection_error"


def install() -> None:
    """Patch kombu's Redis channel once per process (idempotent)."""
    channel: Any = redis_transport.Channel
    original = channel._connparams
    if getattr(original, _PATCHED, False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection was closed")
        params: dict[str, Any] = original(self, asynchronous=asynchronous)
        return params

    setattr(_connparams, _PATCHED, True)
    channel._connparams = _connparams
