"""A status callback waiting on a locked message row must not stall the web process.

The sender holds the message's row lock while it calls Twilio; a status callback for that
message waits for it. Crisis texts, unsubscribe pages and /healthz must be answered meanwhile.
PostgreSQL only: row locks are what is being waited on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from outreach.config import load_settings
from outreach.db import make_engine, make_session_factory
from outreach.models import InboundMessage, Message, MessageState
from outreach.outbox import transition
from tests.support.factories import STAMPED_AT, make_contact, make_message
from tests.support.replies import form
from tests.support.waiting import wait_for, waiting_for_a_lock
from tests.support.webhooks import SMS_PATH, STATUS_PATH, post_signed, web_client

SID = "SM" + "c" * 32


def test_an_inbound_sms_is_answered_while_a_status_callback_waits_on_a_locked_row(pg_url: str) -> None:
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        message = make_message(session, make_contact(session))
        transition(
            session, message.id, [MessageState.SCHEDULED], MessageState.SENT, provider_id=SID, now=STAMPED_AT
        )
        message_id = message.id
    sender = factory()
    sender.begin()
    sender.execute(select(Message).where(Message.id == message_id).with_for_update())
    enqueued: list[int] = []
    pool = ThreadPoolExecutor(max_workers=3)
    with web_client(load_settings(database_url=pg_url), factory, enqueued) as client:
        try:
            callback = pool.submit(
                post_signed, client, STATUS_PATH, {"MessageSid": SID, "MessageStatus": "delivered"}
            )
            wait_for(lambda: waiting_for_a_lock(engine), timeout=10, what="the callback to wait on the lock")

            inbound = pool.submit(post_signed, client, SMS_PATH, form("running late")).result(timeout=10)
            health = pool.submit(client.get, "/healthz").result(timeout=10)

            assert (inbound.status_code, health.status_code) == (200, 200)
            assert not callback.done(), "the callback still waits for the sender"
        finally:
            # Released inside the client's block: leaving it waits for the callback to finish.
            sender.rollback()
            sender.close()
        assert callback.result(timeout=10).status_code == 200
    pool.shutdown()
    with factory() as session:
        assert session.get_one(Message, message_id).state == MessageState.DELIVERED
        assert len(session.scalars(select(InboundMessage)).all()) == 1
    engine.dispose()
