"""A worker whose Redis connection is lost keeps running (outreach/broker_fix.py), and the
tasks it held are not lost."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import pytest

from outreach.celeryapp import make_celery
from outreach.config import load_settings

# kombu has no type hints.
Connection: Any = kombu.Connection  # type: ignore[attr-defined]
Exchange: Any = kombu.Exchange  # type: ignore[attr-defined]
Queue: Any = kombu.Queue  # type: ignore[attr-defined]


@pytest.fixture
def queue(redis_url: str) -> Iterator[Any]:
    name = f"broker-fix-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), name)
    yield queue
    with Connection(redis_url) as conn:
        queue(conn.default_channel).delete()


def _held_task(conn: Any, queue: Any) -> None:
    """A task taken from the queue and not yet acknowledged, as a worker holds one (acks_late)."""
    conn.Producer().publish({"task": "outreach.dispatch_due"}, exchange=queue.exchange,
                            routing_key=queue.routing_key, declare=[queue])
    assert conn.default_channel.basic_get(queue.name, no_ack=False) is not None


def _lose_the_connection_as_celery_does(conn: Any) -> None:
    """What the consumer's ``collect()`` leaves when Redis went away during a BRPOP: the channel
    could not be closed, its pools are gone, the transport is detached from the connection."""
    conn.default_channel._disconnect_pools()
    conn._do_close_transport()


def test_closing_a_lost_redis_connection_raises_no_attribute_error(redis_url: str, queue: Any) -> None:
    make_celery(load_settings(broker_url=redis_url))  # as every worker starts: the fix installed
    conn = Connection(redis_url)
    _held_task(conn, queue)
    _lose_the_connection_as_celery_does(conn)

    conn.close()  # AttributeError without the fix: Celery would stop the worker

    # The task held is not lost: it is still in Redis's unacknowledged set and, as after any
    # worker loss, comes back once the visibility timeout has passed (here: at once).
    with Connection(redis_url, transport_options={"visibility_timeout": 0}) as fresh:
        fresh.default_channel.qos.restore_visible()
        message = fresh.default_channel.basic_get(queue.name, no_ack=True)
        assert message is not None
        assert message.decode() == {"task": "outreach.dispatch_due"}
