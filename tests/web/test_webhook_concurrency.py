"""A status callback for a message a sender has locked is answered at once and applied after.

The sender holds the message's row lock while it calls Twilio, and Twilio may call back before
the sender lets go. The webhook only stores the callback, so it neither waits nor stalls other
requests; the applier passes over the locked message and applies its callback on a later run.
PostgreSQL only: row locks are what is being tested.
"""

from __future__ import annotations

from sqlalchemy import select

from outreach.config import load_settings
from outreach.db import make_engine, make_session_factory
from outreach.delivery import ingest
from outreach.models import Message, MessageEvent, MessageState, utcnow
from outreach.outbox import transition
from tests.support.factories import make_contact, make_message
from tests.support.webhooks import STATUS_PATH, post_signed_only, web_client

SID = "SM" + "c" * 32
OTHER_SID = "SM" + "d" * 32


def test_a_callback_for_a_locked_message_is_answered_at_once_and_applied_after_the_lock_goes(
    pg_url: str,
) -> None:
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        ids = []
        for sid in (SID, OTHER_SID):
            message = make_message(session, make_contact(session))
            transition(session, message.id, [MessageState.SCHEDULED], MessageState.SENT, provider_id=sid)
            ids.append(message.id)
    locked_id, other_id = ids
    sender = factory()
    sender.begin()
    sender.execute(select(Message).where(Message.id == locked_id).with_for_update())
    try:
        with web_client(load_settings(database_url=pg_url), factory, []) as client:
            for sid in (SID, OTHER_SID):
                fields = {"MessageSid": sid, "MessageStatus": "delivered"}
                assert post_signed_only(client, STATUS_PATH, fields).status_code == 200
        # With the lock still held, the applier moves the other message and leaves this one.
        assert ingest.apply_pending(factory, utcnow, run_for=60) == 1
        with factory() as session:
            assert session.get_one(Message, locked_id).state == MessageState.SENT
            assert session.get_one(Message, other_id).state == MessageState.DELIVERED
            assert ingest.waiting(session) == 1
    finally:
        sender.rollback()
        sender.close()
    assert ingest.apply_pending(factory, utcnow, run_for=60) == 1
    with factory() as session:
        assert session.get_one(Message, locked_id).state == MessageState.DELIVERED
        events = session.scalars(select(MessageEvent).where(MessageEvent.message_id == locked_id)).all()
        assert [event.status for event in events] == ["delivered"]
        assert ingest.waiting(session) == 0
    engine.dispose()
