"""The send path, at the service layer on both databases, with a recording provider fake."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from outreach.channels import DeliveryError, Effect, Outgoing
from outreach.config import Settings, load_settings
from outreach.contacts import consent
from outreach.db import make_engine, make_session_factory
from outreach.delivery import checks, reconcile, send
from outreach.delivery.claim import mark_stuck_sends_unknown
from outreach.delivery.prepare import prepare as prepare_batch
from outreach.delivery.ratelimit import (
    DatabaseRateLimiter,
    RateLimitUnavailable,
    Reservation,
    interval_seconds,
)
from outreach.delivery.reconcile import reconcile_unknown
from outreach.delivery.send import Services, send_message
from outreach.models import Consent, ConsentSource, Contact, Message, MessageAttempt, MessageState, utcnow
from outreach.outbox import transition
from outreach.replies import responses
from tests.support.appointments import inbound
from tests.support.campaigns import TEMPLATES
from tests.support.factories import STAMPED_AT, make_contact, make_message
from tests.support.fakes import FakeClock, FakeProvider, LimiterThatRuns, fake_services

# 18:00 UTC = 10:00 in Los Angeles (PST): inside the default 08:00-20:00 window.
NOON_LA = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)


def _services(
    settings: Settings, factory: sessionmaker[Session], provider: FakeProvider, now: datetime = NOON_LA
) -> Services:
    return fake_services(settings, factory, provider, now)


def _queued(factory: sessionmaker[Session], **kwargs: object) -> int:
    with factory.begin() as session:
        contact = make_contact(session)
        message = make_message(session, contact, due_at=NOON_LA - timedelta(minutes=1), **kwargs)  # type: ignore[arg-type]
        transition(session, message.id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
        return message.id


def _get(factory: sessionmaker[Session], message_id: int) -> Message:
    """The message with its attempts, readable after the session is gone."""
    with factory() as session:
        message = session.get(Message, message_id, options=[selectinload(Message.attempts_log)])
        assert message is not None
        return message


def test_accepted_send_is_recorded_with_its_attempt(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    provider = FakeProvider()
    message_id = _queued(session_factory)
    assert send_message(_services(settings, session_factory, provider), message_id) == MessageState.SENT
    message = _get(session_factory, message_id)
    assert message.state == MessageState.SENT and message.provider_id and message.attempts == 1
    assert [a.outcome for a in message.attempts_log] == ["accepted"]
    assert provider.sent[0].body == "Test message from the clinic."


def test_a_duplicate_task_never_sends_twice(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    provider = FakeProvider()
    message_id = _queued(session_factory)
    services = _services(settings, session_factory, provider)
    send_message(services, message_id)
    send_message(services, message_id)
    assert len(provider.sent) == 1


def test_automated_sms_without_consent_is_skipped_with_a_reason(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    provider = FakeProvider()
    with session_factory.begin() as session:
        contact = make_contact(session, sms=())
        message = make_message(session, contact, kind="automated", category="education")
        transition(session, message.id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
    send_message(_services(settings, session_factory, provider), message.id)
    row = _get(session_factory, message.id)
    assert row.state == MessageState.SKIPPED and "no education consent for sms" in (row.state_reason or "")
    assert provider.sent == []


def test_transient_error_goes_back_to_the_schedule_later(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    provider = FakeProvider(
        script=[DeliveryError("rate limited", permanent=False, code="20429", retry_after=60)]
    )
    message_id = _queued(session_factory)
    assert send_message(_services(settings, session_factory, provider), message_id) == MessageState.SCHEDULED
    row = _get(session_factory, message_id)
    assert row.due_at >= NOON_LA + timedelta(seconds=60)
    assert [a.outcome for a in row.attempts_log] == ["retry"]


def test_opted_out_at_twilio_revokes_consent_and_cancels_pending_sms(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    provider = FakeProvider(
        script=[DeliveryError("replied STOP", permanent=True, code="21610", effect=Effect.REVOKE_SMS_CONSENT)]
    )
    with session_factory.begin() as session:
        contact = make_contact(session)
        first = make_message(session, contact, kind="automated", due_at=NOON_LA - timedelta(minutes=1))
        later = make_message(session, contact, kind="automated", due_at=NOON_LA + timedelta(days=1))
        email = make_message(
            session, contact, kind="automated", channel="email", due_at=NOON_LA + timedelta(days=1)
        )
        transition(session, first.id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
    assert send_message(_services(settings, session_factory, provider), first.id) == MessageState.FAILED
    with session_factory() as session:
        assert session.get(Message, later.id).state == MessageState.CANCELLED  # type: ignore[union-attr]
        assert session.get(Message, email.id).state == MessageState.SCHEDULED  # type: ignore[union-attr]
        assert consent.summary(session, contact.id)["sms"] == {
            "care": "revoked",
            "education": "revoked",
            "marketing": "revoked",
        }


def test_ambiguous_send_is_reconciled_not_resent(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    provider = FakeProvider(script=[DeliveryError("read timeout", permanent=False, ambiguous=True)])
    message_id = _queued(session_factory)
    services = _services(settings, session_factory, provider)
    assert send_message(services, message_id) == MessageState.UNKNOWN
    services.clock = FakeClock(NOON_LA + timedelta(minutes=5))
    assert reconcile_unknown(services)["sent"] == 1
    assert _get(session_factory, message_id).state == MessageState.SENT
    assert provider.sent == [], "the provider had it already: nothing was sent again"


def test_unknown_send_the_provider_never_saw_is_sent_again(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    provider = FakeProvider()
    message_id = _queued(session_factory)
    with session_factory.begin() as session:
        transition(
            session,
            message_id,
            [MessageState.QUEUED],
            MessageState.UNKNOWN,
            attempts=1,
            correlation_id="never-arrived",
            now=STAMPED_AT,
        )
    services = _services(settings, session_factory, provider, now=utcnow() + timedelta(minutes=5))
    assert reconcile_unknown(services)["resend"] == 1
    assert _get(session_factory, message_id).state == MessageState.SCHEDULED


def test_reconciliation_waits_from_the_timeout_not_from_the_attempts_start(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """A slow batch reaches its last message long after preparing it; that call times out, and
    the request lands at the provider later still. Counted from the attempt's start, the wait
    would be over at once: the provider would not have it yet, and it would be sent twice."""
    provider = FakeProvider(script=[DeliveryError("read timeout", permanent=False, ambiguous=True)])
    message_id = _queued(session_factory)
    services = _services(settings, session_factory, provider)
    clock = FakeClock(NOON_LA)
    services.clock = clock
    batch = prepare_batch(session_factory, settings, [message_id], clock)
    clock.now += timedelta(minutes=10)  # the batch's earlier calls were slow
    slotted = send.Slotted(batch.ready[0], slot=0.0)
    assert send.call_group(services, [slotted]) == {message_id: MessageState.UNKNOWN}
    on_its_way = set(provider.accepted_ids)
    provider.accepted_ids.clear()  # the request has not reached the provider yet

    clock.now += timedelta(seconds=settings.reconcile_after_seconds / 2)
    assert reconcile_unknown(services)["waiting"] == 1
    provider.accepted_ids |= on_its_way  # it landed
    clock.now += timedelta(seconds=settings.reconcile_after_seconds)
    assert reconcile_unknown(services)["sent"] == 1
    assert _get(session_factory, message_id).state == MessageState.SENT
    assert provider.sent == [], "never sent a second time"


def test_a_call_that_could_outlast_the_send_lease_is_not_made(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Earlier calls of the batch used the lease up: less than one provider timeout is left.
    The message goes back to the schedule as never attempted, instead of being called and
    perhaps still waiting when the rescue sweep takes it for a lost worker's."""
    provider = FakeProvider()
    message_id = _queued(session_factory)
    services = _services(settings, session_factory, provider)
    batch = prepare_batch(session_factory, settings, [message_id], services.clock)
    late = replace(batch.ready[0], lease_ends=time.monotonic() + settings.twilio_timeout_seconds / 2)
    assert send.call_group(services, [send.Slotted(late, slot=0.0)]) == {message_id: MessageState.SCHEDULED}
    assert provider.sent == []
    message = _get(session_factory, message_id)
    assert message.attempts == 0 and message.state_reason == send.SLOW_PROVIDER_REASON
    assert [a.outcome for a in message.attempts_log] == ["deferred"]
    # Next time round, with a fresh lease, it goes.
    with session_factory.begin() as session:
        transition(session, message_id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
    assert send_message(services, message_id) == MessageState.SENT
    assert len(provider.sent) == 1


def test_ambiguous_email_is_closed_instead_of_risking_a_duplicate(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    message_id = _queued(session_factory, channel="email")
    with session_factory.begin() as session:
        transition(
            session, message_id, [MessageState.QUEUED], MessageState.UNKNOWN, attempts=1, now=STAMPED_AT
        )
    services = _services(settings, session_factory, FakeProvider(), now=utcnow() + timedelta(minutes=5))
    assert reconcile_unknown(services)["closed"] == 1
    row = _get(session_factory, message_id)
    assert row.state == MessageState.FAILED and "not resent" in (row.state_reason or "")


def test_automated_message_at_night_waits_for_the_window(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    three_am_la = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
    provider = FakeProvider()
    with session_factory.begin() as session:
        contact = make_contact(session)
        message = make_message(session, contact, kind="automated", due_at=three_am_la - timedelta(minutes=1))
        transition(session, message.id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
    send_message(_services(settings, session_factory, provider, now=three_am_la), message.id)
    row = _get(session_factory, message.id)
    assert row.state == MessageState.SCHEDULED
    assert row.due_at == datetime(2026, 1, 15, 16, 0, tzinfo=UTC)  # 08:00 in Los Angeles
    assert provider.sent == []


@pytest.mark.parametrize(
    ("wrote_minutes_ago", "expected"), [(30, MessageState.SENT), (None, MessageState.SCHEDULED)]
)
def test_staff_reply_at_night_goes_only_right_after_the_patients_own_message(
    settings: Settings, session_factory: sessionmaker[Session], wrote_minutes_ago: int | None, expected: str
) -> None:
    three_am_la = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
    provider = FakeProvider()
    message_id = _queued(session_factory, kind="conversational")
    if wrote_minutes_ago is not None:
        with session_factory.begin() as session:
            phone = session.scalar(
                select(Contact.phone)
                .join(Message, Message.contact_id == Contact.id)
                .where(Message.id == message_id)
            )
            assert phone is not None
            inbound(
                session, phone, "are you open tomorrow?", three_am_la - timedelta(minutes=wrote_minutes_ago)
            )
    services = _services(settings, session_factory, provider, now=three_am_la)
    assert send_message(services, message_id) == expected
    assert len(provider.sent) == (1 if expected == MessageState.SENT else 0)


def test_crisis_reply_goes_out_at_night(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    three_am_la = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
    provider = FakeProvider()
    message_id = _queued(session_factory, kind="system")
    assert (
        send_message(_services(settings, session_factory, provider, now=three_am_la), message_id)
        == MessageState.SENT
    )


def test_a_crisis_reply_takes_the_slot_a_campaign_message_booked_ahead(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """At a long code's one message a second, three sends hold the next three seconds and a
    campaign message sleeps towards the fourth. A crisis reply sent meanwhile takes that slot
    instead of queueing behind it; the campaign message books the next one and goes after."""
    provider = FakeProvider()
    # The limiter's own clock stopped: its waits are exact, however long a statement takes.
    limiter = DatabaseRateLimiter(session_factory, lambda _s: 1.0, monotonic=lambda: 0.0)
    sender = checks.sender_for(settings, "sms")
    interval = interval_seconds(1.0)
    limiter.acquire_many(sender, 3, NOON_LA, max_wait=10.0)
    campaign = _queued(session_factory, kind="automated", body="Week 2: what to expect.")
    crisis = _queued(
        session_factory, kind="system", key=responses.reply_key(1, responses.CRISIS_REPLY), body="Call 988."
    )
    crisis_slept: list[float] = []
    crisis_services = replace(_services(settings, session_factory, provider), limiter=limiter)
    crisis_services.sleep = crisis_slept.append
    campaign_slept: list[float] = []

    def campaign_sleeps(seconds: float) -> None:
        campaign_slept.append(seconds)
        if len(campaign_slept) == 1:  # the crisis text comes in while it sleeps
            assert send_message(crisis_services, crisis) == MessageState.SENT

    campaign_services = replace(_services(settings, session_factory, provider), limiter=limiter)
    campaign_services.sleep = campaign_sleeps

    assert send_message(campaign_services, campaign) == MessageState.SENT
    assert [o.body for o in provider.sent] == ["Call 988.", "Week 2: what to expect."]
    lead = send.LOCK_MARGIN_SECONDS
    # The campaign message had the fourth slot; the reply went at it, the campaign message at
    # the fifth: none used twice. (The sleeps are not real, so each wait is slept in full.)
    assert campaign_slept[0] == pytest.approx(3 * interval - lead, abs=0.1)
    assert max(crisis_slept) == pytest.approx(3 * interval, abs=0.1)
    assert max(campaign_slept) == pytest.approx(4 * interval, abs=0.1)


def test_at_a_rate_limit_a_batch_sends_its_replies_before_its_campaign_messages(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """A send task whose batch holds a campaign's backlog and a nurse's answer (the newest row)
    takes one slot a second: the answer must have the first, not whatever is left once the
    backlog has had its turn (in id order it came last, and at a long code was handed back to
    the schedule again and again)."""
    provider = FakeProvider()
    with session_factory.begin() as session:
        backlog = [
            make_message(session, make_contact(session), kind="automated", body=f"Campaign {n}.")
            for n in range(3)
        ]
        answer = make_message(session, make_contact(session), kind="conversational", body="Bring a snack.")
        ids = [m.id for m in [*backlog, answer]]
        for message_id in ids:
            transition(session, message_id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
    limiter = DatabaseRateLimiter(session_factory, lambda _s: 1.0)
    services = replace(_services(settings, session_factory, provider), limiter=limiter)

    send.send_batch(services, ids)

    assert [o.body for o in provider.sent] == ["Bring a snack.", "Campaign 0.", "Campaign 1.", "Campaign 2."]


class _LimiterLostAfterBooking:
    """Redis answers the booking of a slot a second off, then is gone when the send wakes to
    spend its ticket."""

    def acquire_many(self, sender: str, count: int, now: datetime, **options: object) -> Reservation:
        if not options.get("yield_to_urgent"):
            return Reservation([], next_wait=1.0)
        return Reservation([1.0], tickets=[1])

    def use_slot(self, sender: str, ticket: int) -> bool:
        raise RateLimitUnavailable("rate limiter store unreachable (ConnectionError)")


def test_a_send_whose_slot_cannot_be_confirmed_goes_back_unsent(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Whether a crisis reply took the slot meanwhile cannot be known: the provider is not
    called, and the message goes back to the schedule with its attempt not used up."""
    provider = FakeProvider()
    message_id = _queued(session_factory, kind="automated")
    services = replace(_services(settings, session_factory, provider), limiter=_LimiterLostAfterBooking())

    assert send_message(services, message_id) == MessageState.SCHEDULED
    assert provider.sent == []
    message = _get(session_factory, message_id)
    assert message.state_reason == "rate limiter unavailable" and message.attempts == 0


def test_expired_message_is_not_sent(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    provider = FakeProvider()
    message_id = _queued(session_factory, not_after=NOON_LA - timedelta(seconds=1))
    assert send_message(_services(settings, session_factory, provider), message_id) == MessageState.EXPIRED
    assert provider.sent == []


def test_crisis_pause_committed_after_prepare_holds_an_automated_message(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """A crisis text pauses automation between the attempt being recorded and the provider
    call: the education message waits for staff instead of reaching a patient in crisis."""
    provider = FakeProvider()
    message_id = _queued(session_factory, kind="automated")
    services = _services(settings, session_factory, provider)

    def crisis_text() -> None:
        with session_factory.begin() as session:
            contact_id = session.scalar(select(Message.contact_id).where(Message.id == message_id))
            paused = update(Contact).where(Contact.id == contact_id).values(automation_paused_at=NOON_LA)
            session.execute(paused)

    services.limiter = LimiterThatRuns(crisis_text)
    assert send_message(services, message_id) == MessageState.SCHEDULED
    assert provider.sent == []
    message = _get(session_factory, message_id)
    assert message.state_reason == "automation paused for this contact until staff clear it"
    assert message.attempts == 0  # no provider call was made
    assert message.due_at > NOON_LA


def test_opt_out_committed_after_prepare_stops_the_call(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """STOP lands between the attempt being recorded and the provider call: nothing is sent."""
    provider = FakeProvider()
    message_id = _queued(session_factory, kind="automated")
    services = _services(settings, session_factory, provider)

    def stop() -> None:
        with session_factory.begin() as session:
            contact_id = session.scalar(select(Message.contact_id).where(Message.id == message_id))
            assert contact_id is not None
            consent.revoke(
                session,
                contact_id,
                "sms",
                ["care", "education", "marketing"],
                consent.Evidence(source=ConsentSource.KEYWORD, wording="STOP", occurred_at=utcnow()),
            )

    services.limiter = LimiterThatRuns(stop)
    assert send_message(services, message_id) == MessageState.CANCELLED
    assert provider.sent == []
    with session_factory() as session:
        assert session.scalars(select(MessageAttempt.outcome)).all() == ["skipped"]
        assert set(session.scalars(select(Consent.state).where(Consent.channel == "sms"))) == {"revoked"}


def test_a_stalled_worker_whose_message_was_re_claimed_does_not_send_it_again(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Worker A records its attempt, then stalls past its lease. The message is rescued,
    reconciled ("never reached the provider") and claimed by worker B, which records attempt 2.
    When A wakes up and reaches the provider call first, the message is no longer its attempt:
    only B sends. (The two halves of a send are driven one by one to force that interleaving.)"""
    provider = FakeProvider()
    message_id = _queued(session_factory)
    services = _services(settings, session_factory, provider)

    def prepare() -> send.Slotted:
        batch = prepare_batch(session_factory, settings, [message_id], services.clock)
        assert [p.message_id for p in batch.ready] == [message_id]
        return send.Slotted(batch.ready[0], slot=0.0)

    worker_a = prepare()
    with session_factory.begin() as session:
        transition(session, message_id, [MessageState.SENDING], MessageState.UNKNOWN, now=STAMPED_AT)
        transition(session, message_id, [MessageState.UNKNOWN], MessageState.QUEUED, now=STAMPED_AT)
    worker_b = prepare()
    assert send.call_group(services, [worker_a]) == {message_id: "lost-race"}
    assert send.call_group(services, [worker_b]) == {message_id: MessageState.SENT}
    assert len(provider.sent) == 1


def _lose_the_worker(services: Services, factory: sessionmaker[Session], message_id: int) -> None:
    """Claim and prepare the message, then lose the worker before its call: the rescue sweep
    finds it ``sending`` past its lease and makes it ``unknown``."""
    clock = services.clock
    assert isinstance(clock, FakeClock)
    with factory.begin() as session:
        transition(session, message_id, [MessageState.SCHEDULED], MessageState.QUEUED, now=clock.now)
    assert [p.message_id for p in prepare_batch(factory, services.settings, [message_id], clock).ready] == [
        message_id
    ]
    clock.now += timedelta(hours=1)
    with factory.begin() as session:
        assert mark_stuck_sends_unknown(session, clock.now) == [message_id]
    clock.now += timedelta(seconds=services.settings.reconcile_after_seconds + 1)


def _lost_then_queued_again(
    services: Services, factory: sessionmaker[Session], message_id: int, *, losses: int
) -> None:
    """The queued message's worker lost ``losses`` times before its call, each time found
    missing at the provider and scheduled again by reconciliation; then queued once more."""
    with factory.begin() as session:
        transition(session, message_id, [MessageState.QUEUED], MessageState.SCHEDULED, now=STAMPED_AT)
    for _ in range(losses):
        _lose_the_worker(services, factory, message_id)
        assert reconcile_unknown(services)["resend"] == 1
    with factory.begin() as session:
        transition(session, message_id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)


def test_attempts_whose_worker_was_lost_before_the_call_do_not_use_up_the_message(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Workers killed mid-batch five times (each time before this message's call) used to end
    it ``failed``, "never reached the provider after 5 attempts", never sent: a lost message.
    Attempts the provider never received whose worker was lost are not charged; the message
    is sent on the sixth claim, and its history says what each attempt came to."""
    provider = FakeProvider()
    message_id = _queued(session_factory)
    services = _services(settings, session_factory, provider)
    _lost_then_queued_again(services, session_factory, message_id, losses=5)
    assert send_message(services, message_id) == MessageState.SENT
    message = _get(session_factory, message_id)
    assert message.attempts == 6 and len(provider.sent) == 1
    assert [a.outcome for a in message.attempts_log] == ["lost"] * 5 + ["accepted"]


def test_lost_attempts_do_not_lengthen_the_wait_after_a_busy_provider(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Three workers lost before this message's call, then its first call answered "busy": it
    waits as long as any first call's retry (up to one backoff base), not as long as a fourth
    call's (four to eight bases)."""
    busy = DeliveryError("too many requests", permanent=False)
    provider = FakeProvider(script=[busy])
    message_id = _queued(session_factory)
    services = _services(settings, session_factory, provider)
    clock = services.clock
    assert isinstance(clock, FakeClock)
    _lost_then_queued_again(services, session_factory, message_id, losses=3)
    assert send_message(services, message_id) == MessageState.SCHEDULED
    message = _get(session_factory, message_id)
    assert message.attempts == 4
    waits = message.due_at - clock.now
    assert timedelta(0) < waits <= timedelta(seconds=settings.retry_backoff_seconds), waits


def test_a_message_whose_worker_is_always_lost_is_given_up_in_the_end(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Not forever: a message in the batch of every worker that dies is likely what kills them."""
    message_id = _queued(session_factory)
    services = _services(settings, session_factory, FakeProvider())
    with session_factory.begin() as session:
        transition(session, message_id, [MessageState.QUEUED], MessageState.SCHEDULED, now=STAMPED_AT)
    for _ in range(reconcile.LOSSES_LIMIT - 1):
        _lose_the_worker(services, session_factory, message_id)
        assert reconcile_unknown(services)["resend"] == 1
    _lose_the_worker(services, session_factory, message_id)
    assert reconcile_unknown(services)["closed"] == 1
    message = _get(session_factory, message_id)
    assert message.state == MessageState.FAILED
    assert message.state_reason == (
        f"its sending worker stopped {reconcile.LOSSES_LIMIT} times before the provider received it; "
        "not tried again"
    )


def test_calls_that_went_out_unanswered_use_up_the_message(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """A provider that takes requests and silently loses them is not called forever: five calls
    timed out, none found at the provider, and the message fails with that said."""
    timeout = DeliveryError("read timeout", permanent=False, ambiguous=True)
    provider = FakeProvider(script=[timeout] * 5)
    message_id = _queued(session_factory)
    services = _services(settings, session_factory, provider)
    clock = services.clock
    assert isinstance(clock, FakeClock)
    for round_ in range(5):
        if round_:
            with session_factory.begin() as session:
                transition(session, message_id, [MessageState.SCHEDULED], MessageState.QUEUED, now=clock.now)
        assert send_message(services, message_id) == MessageState.UNKNOWN
        provider.accepted_ids.clear()  # it never arrives
        clock.now += timedelta(seconds=settings.reconcile_after_seconds + 1)
        assert reconcile_unknown(services) == {
            "sent": 0,
            "resend": int(round_ < 4),
            "closed": int(round_ == 4),
            "waiting": 0,
        }
    message = _get(session_factory, message_id)
    assert message.state == MessageState.FAILED
    assert message.state_reason == "never reached the provider after 5 attempts"
    assert [a.outcome for a in message.attempts_log] == ["unknown"] * 5


def test_an_adapter_bug_leaves_the_message_unknown_and_keeps_patient_data_out_of_the_log(
    settings: Settings, session_factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    def explode(outgoing: Outgoing) -> None:
        raise RuntimeError(f"could not encode {outgoing.to}: {outgoing.body}")

    provider = FakeProvider(before_send=explode)
    message_id = _queued(session_factory)
    with caplog.at_level(logging.DEBUG):
        assert (
            send_message(_services(settings, session_factory, provider), message_id) == MessageState.UNKNOWN
        )
    phone = _get(session_factory, message_id).to_address
    assert phone and phone not in caplog.text
    assert "Test message from the clinic" not in caplog.text
    assert "RuntimeError" in caplog.text


def test_an_accept_is_recorded_even_when_its_call_transaction_is_lost(pg_url: str) -> None:
    """The database connection of the call transaction dies while the provider is taking the
    message (a restart, a deadlock victim, a dropped network): the message went out, so it is
    recorded ``sent`` at once in a transaction of its own, instead of waiting ``sending`` for
    the rescue sweep and reconciliation."""
    settings = load_settings(database_url=pg_url, templates_dir=TEMPLATES)
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)

    def drop_the_call_transaction(_outgoing: Outgoing) -> None:
        with engine.connect() as other:
            dropped = other.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND state = 'idle in transaction'"
                )
            )
        assert dropped == 1

    provider = FakeProvider(before_send=drop_the_call_transaction)
    message_id = _queued(factory)
    try:
        with pytest.raises(OperationalError):
            send_message(_services(settings, factory, provider), message_id)
        assert len(provider.sent) == 1
        message = _get(factory, message_id)
        assert message.state == MessageState.SENT and message.provider_id
        assert [a.outcome for a in message.attempts_log] == ["accepted"]
    finally:
        engine.dispose()


def test_a_message_whose_window_closes_while_it_waits_for_its_slot_is_not_sent(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Prepared one second before 20:00 in Los Angeles, its rate-limit slot comes after 20:00:
    it goes back to the schedule instead of reaching the patient after hours."""
    provider = FakeProvider()
    message_id = _queued(session_factory, kind="automated")
    just_before_eight_pm = datetime(2026, 1, 16, 3, 59, 59, tzinfo=UTC)  # 19:59:59 PST
    services = _services(settings, session_factory, provider, now=just_before_eight_pm)
    clock = services.clock
    assert isinstance(clock, FakeClock)

    def slot_comes_late() -> None:
        clock.now += timedelta(seconds=2)

    services.limiter = LimiterThatRuns(slot_comes_late)
    assert send_message(services, message_id) == MessageState.SCHEDULED
    assert provider.sent == []
    message = _get(session_factory, message_id)
    assert message.state_reason == send.WINDOW_CLOSED_REASON
    assert message.attempts == 0
    # Claimed again, prepare holds it until 08:00 the next morning.
    with session_factory.begin() as session:
        transition(session, message_id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
    assert send_message(services, message_id) == MessageState.SCHEDULED
    assert _get(session_factory, message_id).due_at == datetime(2026, 1, 16, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "not_after", "validity"),
    [
        # 19:00 in Los Angeles: Twilio may hold it until 20:00, when the window closes.
        (datetime(2026, 1, 16, 3, 0, tzinfo=UTC), None, 3600),
        # ... unless the message stops being useful sooner (a reminder before its visit).
        (datetime(2026, 1, 16, 3, 0, tzinfo=UTC), datetime(2026, 1, 16, 3, 10, tzinfo=UTC), 600),
    ],
)
def test_twilio_may_hold_an_sms_only_until_its_window_closes(
    settings: Settings,
    session_factory: sessionmaker[Session],
    now: datetime,
    not_after: datetime | None,
    validity: int,
) -> None:
    provider = FakeProvider()
    message_id = _queued(session_factory, kind="automated", not_after=not_after)
    services = _services(settings, session_factory, provider, now=now)
    assert send_message(services, message_id) == MessageState.SENT
    assert provider.sent[0].validity_period == validity


def test_a_hanging_sms_provider_holds_up_no_email_of_the_same_batch(pg_url: str) -> None:
    """A crisis batch holds the patient's SMS reply and the on-call staff's email alert. With
    Twilio hanging (each call waits out its timeout), the email goes out while the SMS call is
    still waiting, instead of after it (PostgreSQL: the two senders' transactions lock
    different rows)."""
    settings = load_settings(database_url=pg_url, templates_dir=TEMPLATES)
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    released = threading.Event()
    entered = threading.Event()
    watchdog = threading.Timer(10.0, released.set)  # a sequential send fails instead of hanging
    watchdog.daemon = True

    def hang(_outgoing: Outgoing) -> None:
        entered.set()
        released.wait()

    sms = FakeProvider(before_send=hang)
    services = _services(settings, factory, sms)
    email = services.providers["email"]
    assert isinstance(email, FakeProvider)
    email_sent_while_sms_hung: list[bool] = []

    def note(_outgoing: Outgoing) -> None:
        entered.wait(10.0)  # the two threads start in either order
        email_sent_while_sms_hung.append(entered.is_set() and not released.is_set())
        released.set()

    email.before_send = note
    ids = [_queued(factory), _queued(factory, channel="email", subject="Crisis alert")]
    watchdog.start()
    try:
        outcomes = send.send_batch(services, ids)
    finally:
        watchdog.cancel()
        engine.dispose()
    assert outcomes == {ids[0]: MessageState.SENT, ids[1]: MessageState.SENT}
    assert email_sent_while_sms_hung == [True], "the email waited for the hanging SMS call"
