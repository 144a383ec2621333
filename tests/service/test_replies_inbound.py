"""Inbound replies through the service layer (webhook store + task processing), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings, load_settings
from outreach.contacts import consent
from outreach.db import transaction
from outreach.delivery.claim import claim_due, release_stale_claims
from outreach.models import (
    Campaign,
    ConsentEvent,
    Contact,
    Enrollment,
    InboundMessage,
    InboxItem,
    Message,
    MessageKind,
    MessageState,
)
from outreach.replies import handlers
from outreach.replies import inbound as inbound_module
from outreach.replies.inbound import (
    URGENT_CLAIM_LEASE,
    MalformedInbound,
    claim_urgent,
    process_each,
    process_inbound,
    reclaim_urgent,
    screen,
    store_plain,
    unprocessed_inbound_ids,
)
from tests.support.replies import add_contact, form, message, receive, schedule, store

# 03:00 in Walnut Creek (PDT): far outside any sending window.
NIGHT = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)


@pytest.fixture
def quiet_settings(settings: Settings) -> Settings:
    """Twilio does not auto-reply to keywords (so we send confirmations), on-call configured."""
    return load_settings(
        database_url=settings.database_url,
        templates_dir=settings.templates_dir,
        twilio_handles_opt_out=False,
        oncall_sms=["+19255550199"],
        oncall_email=["oncall@clinic.example.org"],
        public_base_url="https://outreach.clinic.example.org",
    )


def _messages(session: Session, **filters: object) -> list[Message]:
    query = select(Message)
    for name, value in filters.items():
        query = query.where(getattr(Message, name) == value)
    session.expire_all()
    return list(session.scalars(query.order_by(Message.id)))


def _items(session: Session) -> list[InboxItem]:
    session.expire_all()
    return list(session.scalars(select(InboxItem).order_by(InboxItem.id)))


def test_stop_revokes_every_sms_category_with_the_message_as_evidence(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session, sms=("care", "education", "marketing"))
    store(session_factory, settings, form("Stop."), NOW)

    session.expire_all()
    assert consent.summary(session, contact.id)["sms"] == {
        "care": "revoked", "education": "revoked", "marketing": "revoked",
    }
    events = session.scalars(
        select(ConsentEvent).where(ConsentEvent.contact_id == contact.id, ConsentEvent.state == "revoked")
    ).all()
    assert {e.category for e in events} == {"care", "education", "marketing"}
    assert all(e.source == "keyword" and "Stop." in e.evidence and e.inbound_message_id for e in events)


def test_stop_cancels_pending_sms_but_not_email_before_any_task_runs(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session, email=("education",))
    schedule(session, contact.id, "sms", "care", "sms-reminder", NOW + timedelta(hours=1))
    schedule(session, contact.id, "email", "education", "email-article", NOW + timedelta(hours=1))

    store(session_factory, settings, form("STOP"), NOW)  # the webhook alone, no task yet

    session.expire_all()
    sms = message(session, "sms-reminder")
    assert (sms.state, sms.state_reason) == ("cancelled", "the patient opted out of SMS by reply")
    assert message(session, "email-article").state == "scheduled"


def test_stop_stops_the_sms_steps_of_enrollments(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session)
    campaign = Campaign(slug="intro", name="Intro", category="education")
    session.add(campaign)
    session.flush()
    session.add(Enrollment(contact_id=contact.id, campaign_id=campaign.id, started_at=NOW))
    session.commit()

    store(session_factory, settings, form("unsubscribe"), NOW)

    session.expire_all()
    enrollment = session.scalars(select(Enrollment)).one()
    assert enrollment.stopped_channels == ["sms"]
    assert enrollment.updated_at == NOW  # the STOP's time, not the wall clock's


def test_start_restores_exactly_what_was_granted_before_and_resumes_future_sms(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session, sms=("care", "education"))  # never marketing
    schedule(session, contact.id, "sms", "care", "tomorrow", NOW + timedelta(days=1))
    schedule(session, contact.id, "sms", "care", "in-an-hour", NOW + timedelta(hours=1))
    receive(session_factory, settings, form("STOP"), NOW)

    actions = receive(session_factory, settings, form("START"), NOW + timedelta(hours=2))

    session.expire_all()
    assert consent.summary(session, contact.id)["sms"] == {
        "care": "granted", "education": "granted", "marketing": "revoked",
    }
    assert message(session, "tomorrow").state == "scheduled"
    # It fell due while the patient was opted out: it stays cancelled, never sent late.
    assert message(session, "in-an-hour").state == "cancelled"
    # Twilio answered START itself (default settings): no confirmation of ours.
    assert "opt_in_confirmation" not in actions


def test_yes_from_an_opted_out_contact_opts_back_in(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session)
    receive(session_factory, settings, form("STOP"), NOW)
    receive(session_factory, settings, form("Yes"), NOW + timedelta(minutes=5))

    session.expire_all()
    assert consent.has_consent(session, contact.id, "sms", "care")


def test_yes_from_a_contact_who_never_opted_out_is_just_a_message_for_staff(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session)
    receive(session_factory, settings, form("YES"), NOW)
    assert [(i.kind, i.classification) for i in _items(session)] == [("message", "other")]


def test_opt_out_confirmation_is_sent_once_and_only_when_twilio_does_not_answer(
    session: Session, session_factory: sessionmaker[Session], settings: Settings,
    quiet_settings: Settings,
) -> None:
    add_contact(session)
    assert "opt_out_confirmation" not in receive(session_factory, settings, form("STOP"), NOW)
    receive(session_factory, settings, form("START"), NOW)
    # Twilio never answers an opt-out in the patient's own words: we confirm that one.
    assert "opt_out_confirmation" in receive(
        session_factory, settings, form("please stop texting me"), NOW
    )
    receive(session_factory, settings, form("START"), NOW)

    assert "opt_out_confirmation" in receive(session_factory, quiet_settings, form("STOP"), NOW)
    # A second STOP while already opted out: no second confirmation.
    assert "opt_out_confirmation" not in receive(session_factory, quiet_settings, form("stop"), NOW)

    confirmations = _messages(session, template="sms/system/opt_out_confirmation")
    assert len(confirmations) == 2
    assert all(m.kind == "system" and m.context.get("after_opt_out") for m in confirmations)
    assert all(m.not_after == NOW + timedelta(minutes=5) for m in confirmations)


def test_bare_cancel_opts_out_and_opens_a_call_them_task(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session)
    receive(session_factory, settings, form("Cancel"), NOW)

    session.expire_all()
    assert consent.state_of(session, contact.id, "sms", "care") == "revoked"
    [task] = _items(session)
    assert (task.kind, task.contact_id) == ("task", contact.id)
    assert "cancel an appointment" in task.text and "call them" in task.text


def test_crisis_at_3am_gets_reply_urgent_item_oncall_alerts_and_pause(
    session: Session, session_factory: sessionmaker[Session], quiet_settings: Settings
) -> None:
    contact = add_contact(session, phone="+15105551234")
    schedule(session, contact.id, "sms", "education", "article", NIGHT + timedelta(hours=8))

    actions = receive(session_factory, quiet_settings, form("I want to end it all", "+15105551234"), NIGHT)

    [reply] = _messages(session, template="sms/system/crisis_reply")
    assert (reply.kind, reply.channel, reply.category, reply.due_at) == ("system", "sms", "care", NIGHT)
    assert reply.idempotency_key.endswith(":crisis_reply") and reply.to_override == "+15105551234"
    [item] = _items(session)
    assert (item.kind, item.urgent, item.contact_id, item.text) == (
        "crisis", True, contact.id, "I want to end it all"
    )
    alerts = _messages(session, kind=MessageKind.ALERT)
    assert {(a.channel, a.to_override, a.template) for a in alerts} == {
        ("sms", "+19255550199", "sms/system/oncall_alert"),
        ("email", "oncall@clinic.example.org", "email/system/oncall_alert"),
    }
    for alert in alerts:
        # No patient data in an alert: the item's link, and whether staff must phone.
        assert alert.context == {
            "inbound_id": alert.context["inbound_id"],
            "inbox_item_id": item.id,
            "inbox_url": f"https://outreach.clinic.example.org/inbox/{item.id}",
            "patient_opted_out": False,
        }
        assert alert.contact_id is None and alert.body_override is None and alert.due_at == NIGHT
    session.expire_all()
    paused = session.get_one(Contact, contact.id)
    # Stamped with the run's clock, not the wall's.
    assert paused.automation_paused_at == NIGHT and paused.updated_at == NIGHT
    # Held by dispatch while paused, not cancelled, so clearing the pause resumes it.
    assert message(session, "article").state == "scheduled"
    assert "crisis_reply" in actions


def test_crisis_pause_is_in_place_as_soon_as_the_webhook_commits(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session)
    store(session_factory, settings, form("kms"), NOW)
    session.expire_all()
    assert session.get_one(Contact, contact.id).automation_paused_at == NOW


def test_crisis_from_an_opted_out_patient_sends_no_sms_and_the_alert_says_phone_them(
    session: Session, session_factory: sessionmaker[Session], quiet_settings: Settings
) -> None:
    add_contact(session)
    receive(session_factory, quiet_settings, form("STOP"), NOW)

    receive(session_factory, quiet_settings, form("I took all my pills"), NOW + timedelta(minutes=1))

    assert _messages(session, template="sms/system/crisis_reply") == []
    alerts = _messages(session, kind=MessageKind.ALERT)
    assert len(alerts) == 2 and all(a.context["patient_opted_out"] is True for a in alerts)
    [item] = [i for i in _items(session) if i.kind == "crisis"]
    assert item.urgent and "PHONE THE PATIENT" in item.text


def test_crisis_that_also_says_stop_texting_opts_out_and_asks_staff_to_phone(
    session: Session, session_factory: sessionmaker[Session], quiet_settings: Settings
) -> None:
    contact = add_contact(session)
    receive(session_factory, quiet_settings, form("stop texting me, I want to die"), NOW)

    session.expire_all()
    assert consent.state_of(session, contact.id, "sms", "care") == "revoked"
    assert _messages(session, template="sms/system/crisis_reply") == []
    alerts = _messages(session, kind="alert")
    assert alerts and all(a.context["patient_opted_out"] is True for a in alerts)


def test_crisis_from_an_unknown_number_still_gets_the_crisis_reply(
    session: Session, session_factory: sessionmaker[Session], quiet_settings: Settings
) -> None:
    receive(session_factory, quiet_settings, form("i want to kill myself", "+14155550100"), NOW)

    [reply] = _messages(session, template="sms/system/crisis_reply")
    assert (reply.contact_id, reply.to_override) == (None, "+14155550100")
    [item] = _items(session)
    assert (item.kind, item.urgent, item.contact_id) == ("crisis", True, None)


def test_help_gets_one_system_reply_at_any_hour_when_twilio_does_not_answer_it(
    session: Session, session_factory: sessionmaker[Session], quiet_settings: Settings
) -> None:
    contact = add_contact(session)
    assert receive(session_factory, quiet_settings, form("HELP"), NIGHT) == ["help_reply"]
    [reply] = _messages(session, template="sms/system/help")
    assert (reply.kind, reply.contact_id, reply.due_at) == ("system", contact.id, NIGHT)


def test_free_text_from_an_unknown_sender_lands_in_the_inbox_without_a_contact(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    receive(session_factory, settings, form("Is this the clinic?", "+14155550100"), NOW)
    [item] = _items(session)
    assert (item.kind, item.contact_id, item.state, item.text) == (
        "message", None, "unread", "Is this the clinic?"
    )


def test_a_phone_shared_by_two_contacts_gives_one_item_listing_both(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    ana = add_contact(session, phone="+15105550123", first_name="Ana")
    ben = add_contact(session, phone="+15105550123", first_name="Ben")
    receive(session_factory, settings, form("running late", "+15105550123"), NOW)

    [item] = _items(session)
    assert item.contact_id is None
    assert [c["contact_id"] for c in item.candidates] == [ana.id, ben.id]


def test_a_stop_from_a_shared_phone_opts_out_every_contact_on_it(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    ana = add_contact(session, phone="+15105550123", first_name="Ana")
    ben = add_contact(session, phone="+15105550123", first_name="Ben")
    receive(session_factory, settings, form("STOP", "+15105550123"), NOW)
    session.expire_all()
    assert not consent.has_consent(session, ana.id, "sms", "care")
    assert not consent.has_consent(session, ben.id, "sms", "care")


def test_more_free_text_joins_the_open_conversation(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session)
    receive(session_factory, settings, form("hi, quick question"), NOW)
    receive(session_factory, settings, form("about parking"), NOW + timedelta(minutes=1))
    [item] = _items(session)
    assert item.text == "about parking" and item.state == "unread"


def test_appointment_digits_go_to_staff_with_their_classification_by_default(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    add_contact(session)
    receive(session_factory, settings, form("１"), NOW)
    [item] = _items(session)
    assert (item.kind, item.classification) == ("message", "confirm")


def test_a_duplicate_message_sid_changes_nothing(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session)
    fields = form("STOP", sid="SM" + "d" * 32)
    first = store(session_factory, settings, fields, NOW)
    events_before = session.scalar(select(func.count()).select_from(ConsentEvent))
    session.commit()  # end the read: on SQLite it holds the write lock (BEGIN IMMEDIATE)
    second = store(session_factory, settings, fields, NOW + timedelta(seconds=5))

    assert (first.status, second.status) == ("stored", "duplicate")
    assert second.inbound_id == first.inbound_id
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(InboundMessage)) == 1
    assert session.scalar(select(func.count()).select_from(ConsentEvent)) == events_before
    assert contact.id in second.contact_ids


def test_processing_a_message_twice_adds_nothing(
    session: Session, session_factory: sessionmaker[Session], quiet_settings: Settings
) -> None:
    add_contact(session)
    result = store(session_factory, quiet_settings, form("suicide"), NOW)
    with transaction(session_factory) as tx:
        first = process_inbound(tx, quiet_settings, result.inbound_id, NOW)
    with transaction(session_factory) as tx:
        second = process_inbound(tx, quiet_settings, result.inbound_id, NOW)
    assert first and second == []
    assert len(_items(session)) == 1
    assert len(_messages(session)) == 3  # the reply and two alerts


def test_a_crisis_reply_is_claimed_ahead_of_a_backlog_already_due(
    session: Session, session_factory: sessionmaker[Session], quiet_settings: Settings
) -> None:
    """A crisis reply and its alerts go out on the control queue: claimed by their keys while
    a campaign's rows, due earlier, stay scheduled; a second claim takes nothing."""
    texter = add_contact(session)
    other = add_contact(session, phone="+19255550111")
    for n in range(1, 4):
        schedule(session, other.id, "sms", "care", f"campaign:{n}", NOW - timedelta(minutes=n))
    result = store(session_factory, quiet_settings, form("i want to end it all"), NOW)
    with transaction(session_factory) as tx:
        process_inbound(tx, quiet_settings, result.inbound_id, NOW)
    with transaction(session_factory) as tx:
        claimed = claim_urgent(tx, quiet_settings, result.inbound_id, NOW)
    with transaction(session_factory) as tx:
        again = claim_urgent(tx, quiet_settings, result.inbound_id, NOW)

    replies = _messages(session, state=MessageState.QUEUED)
    assert sorted(m.id for m in replies) == claimed and again == []
    assert sorted(m.kind for m in replies) == ["alert", "alert", "system"]
    backlog = [message(session, f"campaign:{n}") for n in range(1, 4)]
    assert {m.state for m in backlog} == {MessageState.SCHEDULED}
    assert texter.id in {m.contact_id for m in replies}


def test_a_crisis_reply_whose_send_task_was_lost_is_claimed_again_within_a_minute(
    session: Session,
    session_factory: sessionmaker[Session],
    quiet_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The send task of a crisis reply and its alerts never ran (a publish lost, a broker
    restarted without its queues). Their claim is short: half a minute on, the rescue sweep
    returns them to the schedule and they are claimed again at once for the control queue,
    while a campaign's lost claims wait out the usual lease and then go back in due order."""
    other = add_contact(session, phone="+19255550111")
    for n in range(1, 4):
        schedule(session, other.id, "sms", "care", f"campaign:{n}", NOW - timedelta(minutes=n))
    with transaction(session_factory) as tx:
        assert len(claim_due(tx, NOW)) == 3  # and their send task lost as well
    add_contact(session)
    result = store(session_factory, quiet_settings, form("i want to end it all"), NOW)
    with transaction(session_factory) as tx:
        process_inbound(tx, quiet_settings, result.inbound_id, NOW)
    with transaction(session_factory) as tx:
        claimed = claim_urgent(tx, quiet_settings, result.inbound_id, NOW)

    def rescue(at: datetime) -> list[int]:
        with transaction(session_factory) as tx:
            return reclaim_urgent(tx, quiet_settings, release_stale_claims(tx, at), at)

    reclaimed_before = REGISTRY.get_sample_value("outreach_urgent_reclaimed_total") or 0.0
    assert len(claimed) == 3 and rescue(NOW + timedelta(seconds=29)) == []
    assert rescue(NOW + URGENT_CLAIM_LEASE + timedelta(seconds=1)) == claimed
    assert f"urgent messages {claimed} claimed again: their send task never ran" in caplog.text
    assert REGISTRY.get_sample_value("outreach_urgent_reclaimed_total") == reclaimed_before + 3
    campaign = [message(session, f"campaign:{n}") for n in range(1, 4)]
    assert {m.state for m in campaign} == {MessageState.QUEUED}  # their lease is 5 minutes
    session.rollback()  # read afresh below (and SQLite's writer is not kept waiting)

    assert rescue(NOW + timedelta(minutes=6)) == claimed  # lost again: claimed again
    assert {m.state for m in campaign} == {MessageState.SCHEDULED}
    assert sorted(m.id for m in _messages(session, state=MessageState.QUEUED)) == claimed


def test_other_replies_wait_their_turn(
    session: Session, session_factory: sessionmaker[Session], quiet_settings: Settings
) -> None:
    """HELP's answer is not urgent: it stays in due order, behind what fell due before it (a
    staff reply written a moment later must not overtake it either)."""
    add_contact(session)
    result = store(session_factory, quiet_settings, form("HELP"), NOW)
    with transaction(session_factory) as tx:
        process_inbound(tx, quiet_settings, result.inbound_id, NOW)
    with transaction(session_factory) as tx:
        assert claim_urgent(tx, quiet_settings, result.inbound_id, NOW) == []
    assert [m.kind for m in _messages(session, state=MessageState.SCHEDULED)] == ["system"]


def test_processing_an_unknown_id_is_a_no_op(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with transaction(session_factory) as tx:
        assert process_inbound(tx, settings, 999_999, NOW) == []


@pytest.mark.parametrize("missing", ["MessageSid", "From", "To", "Body"])
def test_a_payload_without_a_required_field_is_refused_naming_it(
    session: Session, session_factory: sessionmaker[Session], settings: Settings, missing: str
) -> None:
    fields = form("hello")
    del fields[missing]
    with pytest.raises(MalformedInbound, match=missing) as caught:
        store(session_factory, settings, fields, NOW)
    assert caught.value.field == missing
    assert "hello" not in str(caught.value)
    assert session.scalar(select(func.count()).select_from(InboundMessage)) == 0


def test_pending_messages_of_other_states_are_untouched_by_stop(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    contact = add_contact(session)
    schedule(session, contact.id, "sms", "care", "already-sent", NOW - timedelta(hours=1))
    message(session, "already-sent").state = MessageState.SENT
    session.commit()
    store(session_factory, settings, form("STOP"), NOW)
    session.expire_all()
    assert message(session, "already-sent").state == MessageState.SENT


def test_every_reply_and_alert_row_renders_with_the_clinic_templates(
    session: Session, session_factory: sessionmaker[Session], quiet_settings: Settings
) -> None:
    from outreach.content.rendering import render_message

    add_contact(session)
    receive(session_factory, quiet_settings, form("HELP"), NOW)
    receive(session_factory, quiet_settings, form("I want to end it all"), NOW)
    receive(session_factory, quiet_settings, form("STOP"), NOW)
    receive(session_factory, quiet_settings, form("START"), NOW)
    receive(session_factory, quiet_settings, form("suicide", "+14155550100"), NOW)

    rows = _messages(session)
    assert {m.template for m in rows} == {
        "sms/system/help", "sms/system/crisis_reply", "sms/system/opt_out_confirmation",
        "sms/system/opt_in_confirmation", "sms/system/oncall_alert", "email/system/oncall_alert",
    }
    for row in rows:
        rendered = render_message(session, quiet_settings, row)
        assert rendered.text
    crisis = next(m for m in rows if m.template == "sms/system/crisis_reply")
    text = render_message(session, quiet_settings, crisis).text
    assert "988" in text and "911" in text and "24/7" in text


def test_plain_texts_stored_together_keep_one_row_and_one_count_for_a_retried_text(
    session_factory: sessionmaker[Session],
) -> None:
    """Twilio's retry of a text can land in the same batch as the text itself: one row, one
    id to process, counted once in the inbound metric."""
    first, other = form("running late"), form("see you soon")
    before = _counted_other()
    batch = [(screen(first), NOW), (screen(other), NOW), (screen(dict(first)), NOW + timedelta(seconds=1))]
    with transaction(session_factory) as session:
        ids = store_plain(session, batch)
    with transaction(session_factory) as session:
        rows = session.execute(select(InboundMessage.id, InboundMessage.body)).all()
    assert sorted(body for _, body in rows) == ["running late", "see you soon"]
    assert ids == sorted(i for i, _ in rows)
    assert _counted_other() - before == 2
    # Retried again later, before its task ran: handed to processing again, not stored again.
    with transaction(session_factory) as session:
        assert store_plain(session, [(screen(first), NOW + timedelta(seconds=5))]) == [
            i for i, body in rows if body == "running late"
        ]


def _counted_other() -> float:
    return REGISTRY.get_sample_value("outreach_inbound_replies_total", {"classification": "other"}) or 0.0


def test_a_text_that_fails_is_left_for_the_sweep_and_holds_up_none_after_it(
    session: Session,
    session_factory: sessionmaker[Session],
    quiet_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Texts processed by one task: a text whose handling raises (a handler that fails for it
    stands in for a bug) is rolled back and left for the sweep; the texts after it are handled,
    a crisis among them gets its reply claimed for sending, and the log names only the id."""
    add_contact(session, phone="+15105551234")
    session.commit()
    with transaction(session_factory) as tx:
        plain = store_plain(tx, [(screen(form(body)), NOW) for body in ("running late", "poison text")])
    crisis = store(session_factory, quiet_settings, form("I want to end it all", "+15105551234"), NOW)
    real = handlers.handle

    def handle(reply: handlers.Reply) -> list[str]:
        if reply.inbound.id == plain[1]:
            raise RuntimeError("poison text")
        return real(reply)

    monkeypatch.setattr(handlers, "handle", handle)
    urgent: list[list[int]] = []
    ids = [*plain, crisis.inbound_id]
    failed = process_each(session_factory, quiet_settings, ids, lambda: NOW, urgent.append)

    assert failed == [plain[1]]
    with transaction(session_factory) as tx:
        assert unprocessed_inbound_ids(tx, received_before=NOW + timedelta(minutes=1)) == [plain[1]]
    assert len(urgent) == 1 and urgent[0], "the crisis reply and alerts were claimed for sending"
    assert f"inbound {plain[1]} not processed (RuntimeError)" in caplog.text
    assert "poison" not in caplog.text


def test_a_crisis_reply_that_cannot_be_claimed_at_once_still_goes_in_due_order(
    session: Session,
    session_factory: sessionmaker[Session],
    quiet_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Processing committed but the urgent claim failed (a database blip): the text is not sent
    round again, and its reply and alerts stay scheduled for the dispatcher."""
    add_contact(session, phone="+15105551234")
    session.commit()
    crisis = store(session_factory, quiet_settings, form("I want to end it all", "+15105551234"), NOW)

    def blip(*_: object) -> list[int]:
        raise RuntimeError("connection reset")

    monkeypatch.setattr(inbound_module, "claim_urgent", blip)
    urgent: list[list[int]] = []
    failed = process_each(session_factory, quiet_settings, [crisis.inbound_id], lambda: NOW, urgent.append)

    assert failed == [] and urgent == []
    with transaction(session_factory) as tx:
        assert unprocessed_inbound_ids(tx, received_before=NOW + timedelta(minutes=1)) == []
        waiting = tx.scalars(select(Message).where(Message.state == MessageState.SCHEDULED)).all()
    assert waiting, "the crisis reply and alerts are still to be sent"
    logged = f"inbound {crisis.inbound_id} processed, its urgent messages not claimed (RuntimeError)"
    assert logged in caplog.text
