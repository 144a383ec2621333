"""Status callbacks under contention: a locked message, many at once, a database that fails.

A status callback for a message a sender has locked is answered at once and applied after.
The sender holds the message's row lock while it calls Twilio, and Twilio may call back before
the sender lets go. The webhook only stores the callback, so it neither waits nor stalls other
requests; the applier passes over the locked message and applies its callback on a later run.
The locking test is PostgreSQL only: row locks are what is being tested.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings, load_settings
from outreach.db import make_engine, make_session_factory
from outreach.delivery import ingest
from outreach.models import Message, MessageEvent, MessageState, StatusInbox, utcnow
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


def test_callbacks_arriving_together_are_each_stored_before_they_are_answered(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    sids = [f"SM{n:032x}" for n in range(64)]
    with web_client(settings, session_factory, []) as client, ThreadPoolExecutor(max_workers=16) as pool:
        forms = [{"MessageSid": sid, "MessageStatus": "sent"} for sid in sids]
        answers = list(pool.map(lambda form: post_signed_only(client, STATUS_PATH, form), forms))
        assert [answer.status_code for answer in answers] == [200] * len(sids)
        with session_factory() as session:
            stored = session.scalars(select(StatusInbox.provider_id)).all()
    assert sorted(stored) == sids


def test_a_callback_that_cannot_be_stored_gets_503_so_twilio_sends_it_again(tmp_path: Path) -> None:
    # A database without the tables: the insert fails as it would with the database down.
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with web_client(load_settings(database_url=str(engine.url)), make_session_factory(engine), []) as client:
        response = post_signed_only(client, STATUS_PATH, {"MessageSid": SID, "MessageStatus": "delivered"})
    assert response.status_code == 503
    engine.dispose()
