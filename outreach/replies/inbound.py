"""Inbound SMS: stored once by the webhook, then processed by a Celery task.

The webhook first ``screen``s the form: validated and classified before anything is written.
A text whose meaning needs the sender's consent, or that must act the moment it is stored
(an opt-out, an opt-in, a crisis: see ``effects``), goes through ``store_inbound``, which
locks the sender's contacts, stores the message once (deduplicated on MessageSid) and applies
that effect in the same transaction. Every other text (most of them: confirmations, HELP,
free text) is ``plain``: ``store_plain`` appends it, with the plain texts that arrived at the
same moment, without locking anyone, since nothing about it depends on or changes a
patient's state until its task runs. ``process_inbound`` runs in a task, by id, and writes
the consequences: replies and alerts as outbox rows, staff inbox items.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import phonenumbers
from sqlalchemy import CursorResult, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased, sessionmaker

from outreach import outbox
from outreach.config import Settings
from outreach.contacts import consent
from outreach.db import is_postgres, transaction
from outreach.delivery import claim
from outreach.errors import OutreachError
from outreach.models import Category, Channel, Consent, Contact, InboundClass, InboundMessage, Message
from outreach.ops import metrics
from outreach.replies import effects, handlers, responses
from outreach.replies.classify import ALSO_OPT_OUT, Classification, classify, depends_on_consent
from outreach.replies.handlers import Reply

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
REQUIRED_FIELDS = ("MessageSid", "From", "To", "Body")
# Column sizes in outreach.models.inbound, so an oversized field is a clear 400, not a 500.
FIELD_LIMITS = {"MessageSid": 64, "From": 32, "To": 32, "OptOutType": 16}


class MalformedInbound(OutreachError):
    """The webhook payload lacks a field or has one we cannot store. Names the field only."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"inbound SMS: field {field} {problem}")
        self.field = field


@dataclass(frozen=True)
class StoreResult:
    status: Literal["stored", "duplicate"]
    inbound_id: int
    classification: str
    contact_ids: tuple[int, ...]
    # True while the message still waits for process_inbound: enqueue it (again, harmlessly).
    needs_processing: bool
    # What the webhook answers Twilio. Replies go through the outbox, never inline TwiML.
    twiml: str = EMPTY_TWIML


_INBOUND: Table = InboundMessage.__table__  # type: ignore[assignment]
_NANP_E164 = re.compile(r"\+1[2-9][0-9]{2}[2-9][0-9]{6}")

# Classes that act the moment they are stored (``store_inbound``).
IMMEDIATE = frozenset({InboundClass.OPT_OUT, InboundClass.OPT_IN, InboundClass.CRISIS})
# The longest a crisis reply's or alert's claim waits for its send task (see _urgent_lease).
URGENT_CLAIM_LEASE = timedelta(seconds=30)


@dataclass(frozen=True)
class Screened:
    """An inbound SMS validated and classified, before anything is written."""

    form: Mapping[str, str]
    sender: str
    result: Classification

    @property
    def plain(self) -> bool:
        """Nothing about it depends on the sender's consent or must hold at once: it can be
        stored without locking the sender (``store_plain``)."""
        return (
            self.result.classification not in IMMEDIATE
            and not self.result.has(ALSO_OPT_OUT)
            and not depends_on_consent(self.result)
        )


def screen(form: Mapping[str, str]) -> Screened:
    """Validate and classify, as if the sender were not opted out (``Screened.plain`` says
    when that could matter). Raises ``MalformedInbound``."""
    _validate(form)
    return Screened(form, normalise_phone(form["From"]), classify(form["Body"], _opt_out_type(form)))


def store_plain(session: Session, received: Sequence[tuple[Screened, datetime]]) -> list[int]:
    """Append plain texts (each with the instant it came in) in one insert; returns the ids
    to process: the new ones, and any repeat whose first copy still waits for its task."""
    rows = [_row(s.form, s.sender, at, str(s.result.classification)) for s, at in received]
    inserted: dict[str, int] = dict(
        session.execute(
            _insert(session).on_conflict_do_nothing(index_elements=["provider_sid"]).returning(
                _INBOUND.c.provider_sid, _INBOUND.c.id
            ),
            rows,
        ).all()
    )
    new = set(inserted.values())
    repeats = {row["provider_sid"] for row in rows} - inserted.keys()
    waiting = (
        list(
            session.scalars(
                select(InboundMessage.id).where(
                    InboundMessage.provider_sid.in_(sorted(repeats)), InboundMessage.processed_at.is_(None)
                )
            )
        )
        if repeats
        else []
    )
    for screened, _ in received:
        # Popped: Twilio's retry of a text in the same batch is counted and logged once.
        inbound_id = inserted.pop(screened.form["MessageSid"].strip(), None)
        if inbound_id is not None:
            metrics.count_inbound(screened.result.classification)
            log.info("inbound %s stored: %s (%s)", inbound_id, screened.result.classification,
                     screened.result.rule)
    return sorted(new | set(waiting))


def store_inbound(
    session: Session, settings: Settings, form: Mapping[str, str], now: datetime
) -> StoreResult:
    """Store one inbound SMS and apply its immediate effects. Raises ``MalformedInbound``."""
    _validate(form)
    sender = normalise_phone(form["From"])
    senders = _lock_senders(session, sender)
    contact_ids = tuple(senders)
    opted_out = any(consent.view_of(state) == "revoked" for state in senders.values())
    # Classified before the insert, so the row is written once, classification included.
    result = classify(form["Body"], _opt_out_type(form), sender_opted_out=opted_out)
    inbound_id = _insert_once(session, form, sender, now, result.classification)
    if inbound_id is None:
        existing = session.scalars(
            select(InboundMessage).where(InboundMessage.provider_sid == form["MessageSid"].strip())
        ).one()
        return StoreResult(
            "duplicate",
            existing.id,
            existing.classification or "",
            contact_ids,
            needs_processing=existing.processed_at is None,
        )
    # What must hold the moment a text is stored, not when its task runs (module docstring).
    opt_out = result.classification == InboundClass.OPT_OUT or result.has(ALSO_OPT_OUT)
    opt_in = not opt_out and result.classification == InboundClass.OPT_IN
    crisis = result.classification == InboundClass.CRISIS
    if opt_out or opt_in or crisis:
        # Locked above; the effects work on the mapped contacts.
        contacts = [session.get_one(Contact, contact_id) for contact_id in contact_ids]
        inbound = session.get_one(InboundMessage, inbound_id)
        if opt_out:
            effects.opt_out(session, contacts, inbound, now)
        if opt_in:
            effects.opt_in(session, contacts, inbound, now)
        if crisis:
            effects.pause_for_crisis(session, contacts, inbound, now)
        session.flush()
    metrics.count_inbound(result.classification)
    log.info("inbound %s stored: %s (%s)", inbound_id, result.classification, result.rule)
    return StoreResult("stored", inbound_id, str(result.classification), contact_ids, True)


def _lock_senders(session: Session, phone: str) -> dict[int, str | None]:
    """Lock the contacts with this phone (in id order, as ``outbox.lock_contacts`` does, so two
    lockers never deadlock) and read each one's SMS care consent, in one statement: the
    opt-out test (``effects.sms_opted_out``) without loading a mapped contact per reply; the
    state is a consent row's, ``None`` where there is none (``consent.view_of``)."""
    care = aliased(Consent)
    query = (
        select(Contact.id, care.state)
        .outerjoin(
            care,
            (care.contact_id == Contact.id)
            & (care.channel == str(Channel.SMS))
            & (care.category == str(Category.CARE)),
        )
        .where(Contact.phone == phone)
        .order_by(Contact.id)
    )
    if is_postgres(session):
        query = query.with_for_update(of=Contact)
    return {contact_id: state for contact_id, state in session.execute(query)}


def _opt_out_type(form: Mapping[str, str]) -> str | None:
    return (form.get("OptOutType") or "").strip().upper() or None


def process_inbound(session: Session, settings: Settings, inbound_id: int, now: datetime) -> list[str]:
    """Write the replies, alerts and inbox items for one stored message. Idempotent: the first
    run marks it processed; later runs (duplicate tasks, the sweep) return an empty list.
    Returns what was done, e.g. ``["crisis_reply", "inbox:crisis:7", "alert:sms"]``."""
    claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(InboundMessage)
        .where(InboundMessage.id == inbound_id, InboundMessage.processed_at.is_(None))
        .values(processed_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return []
    inbound = session.get_one(InboundMessage, inbound_id, populate_existing=True)
    contacts = outbox.lock_contacts(session, contacts_with_phone_ids(session, inbound.from_address))
    result = reclassify(inbound)
    actions = handlers.handle(Reply(session, settings, inbound, contacts, result, now))
    log.info("inbound %s processed: %s", inbound.id, ", ".join(actions) or "nothing to do")
    return actions


def process_each(
    factory: sessionmaker[Session],
    settings: Settings,
    inbound_ids: Sequence[int],
    clock: Callable[[], datetime],
    send_urgent: Callable[[list[int]], None],
) -> list[int]:
    """Process stored texts one after another, each in transactions of its own, handing a
    crisis text's reply and alerts to ``send_urgent`` the moment they are claimed. A text that
    fails is logged (its id and the error's type: a library's message may quote the text) and
    left unprocessed for the sweep, never in the way of the texts after it. Returns those ids.
    A processed text whose urgent messages cannot be claimed leaves them scheduled: the
    dispatcher sends them in due order."""
    failed: list[int] = []
    for inbound_id in inbound_ids:
        try:
            with transaction(factory) as session:
                process_inbound(session, settings, inbound_id, clock())
        except Exception as exc:
            log.error("inbound %s not processed (%s); left for the sweep", inbound_id, type(exc).__name__)
            failed.append(inbound_id)
            continue
        try:
            with transaction(factory) as session:
                urgent = claim_urgent(session, settings, inbound_id, clock())
        except Exception as exc:
            log.error("inbound %s processed, its urgent messages not claimed (%s); they go in due order",
                      inbound_id, type(exc).__name__)
            continue
        if urgent:
            send_urgent(urgent)
    return failed


def claim_urgent(session: Session, settings: Settings, inbound_id: int, now: datetime) -> list[int]:
    """Claim the crisis reply and the on-call alerts that processing this message wrote, ahead
    of everything else due: the caller hands them to a send task on the control queue, so a
    crisis reply never waits for a campaign's backlog to drain. Nothing for any other text."""
    keys = responses.urgent_keys(settings, inbound_id)
    return claim.claim_keys(session, keys, now, _urgent_lease(settings))


def reclaim_urgent(session: Session, settings: Settings, released: Sequence[int], now: datetime) -> list[int]:
    """Among messages the rescue sweep just returned to the schedule (their send task never
    ran: a publish lost, a broker restarted without its queues), claim the crisis replies and
    on-call alerts again, for the caller to hand to the control queue once more. Left to the
    dispatcher, they would go in due order, behind whatever backlog fell due before them."""
    if not released:
        return []
    rows = session.execute(select(Message.idempotency_key).where(Message.id.in_(list(released))))
    keys = [key for (key,) in rows if key and responses.is_urgent_key(key)]
    claimed = claim.claim_keys(session, keys, now, _urgent_lease(settings))
    if claimed:
        # Rare and worth knowing: a crisis reply's or alert's send task went missing.
        log.warning("urgent messages %s claimed again: their send task never ran", claimed)
        metrics.URGENT_RECLAIMED.inc(len(claimed))
    return claimed


def _urgent_lease(settings: Settings) -> timedelta:
    """An urgent claim's lease: short, so that if its send task is lost the rescue sweep finds
    it within a minute rather than after the usual claim lease (5 minutes by default). A task
    that was only late races the new one: each send begins with one conditional update
    (``queued`` to ``sending``), so one of them sends each message, once."""
    return min(timedelta(seconds=settings.claim_lease_seconds), URGENT_CLAIM_LEASE)


def reclassify(inbound: InboundMessage) -> Classification:
    """The stored message's classification with its rule and flags.

    The class stored at webhook time wins (it depended on whether the number was opted out
    then); the rule and flags are recomputed from the body, which is deterministic.
    """
    stored = InboundClass(inbound.classification) if inbound.classification else None
    result = classify(
        inbound.body, inbound.opt_out_type, sender_opted_out=stored == InboundClass.OPT_IN
    )
    if stored is not None and stored != result.classification:
        return Classification(stored, f"stored:{stored}")
    return result


def unprocessed_inbound_ids(session: Session, received_before: datetime, limit: int = 100) -> list[int]:
    """Messages whose task never ran (lost enqueue, broker down): for a periodic sweep."""
    return list(
        session.scalars(
            select(InboundMessage.id)
            .where(InboundMessage.processed_at.is_(None), InboundMessage.received_at < received_before)
            .order_by(InboundMessage.id)
            .limit(limit)
        )
    )


def normalise_phone(raw: str) -> str:
    """E.164 for anything that parses as a phone number (US default region), else as given
    (short codes, alphanumeric senders)."""
    text = raw.strip()
    if _NANP_E164.fullmatch(text):
        # What Twilio sends for a US or Canadian number, and what parsing would return.
        return text
    try:
        parsed = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_possible_number(parsed):
        return text
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def contacts_with_phone_ids(session: Session, phone: str) -> list[int]:
    return list(session.scalars(select(Contact.id).where(Contact.phone == phone).order_by(Contact.id)))


def _validate(form: Mapping[str, str]) -> None:
    for field in REQUIRED_FIELDS:
        if field not in form:
            raise MalformedInbound(field, "is missing")
    for field in ("MessageSid", "From", "To"):
        if not form[field].strip():
            raise MalformedInbound(field, "is empty")
    for field, limit in FIELD_LIMITS.items():
        if len(form.get(field) or "") > limit:
            raise MalformedInbound(field, f"is longer than {limit} characters")


def _insert_once(
    session: Session, form: Mapping[str, str], sender: str, now: datetime, classification: str
) -> int | None:
    """Insert the message unless its MessageSid is known; the new id, or None for a duplicate.

    ON CONFLICT DO NOTHING rather than check-then-insert: two deliveries racing each other
    cannot both insert, and neither aborts its transaction.
    """
    stmt = (
        _insert(session)
        .values(_row(form, sender, now, classification))
        .on_conflict_do_nothing(index_elements=["provider_sid"])
        .returning(_INBOUND.c.id)
    )
    return session.scalars(stmt).first()


def _insert(session: Session) -> postgresql.Insert | sqlite.Insert:
    # On the table, not the mapped class: no ORM bulk-insert machinery for rows it never maps.
    return (postgresql.insert if is_postgres(session) else sqlite.insert)(_INBOUND)


def _row(form: Mapping[str, str], sender: str, now: datetime, classification: str) -> dict[str, Any]:
    return {
        "provider_sid": form["MessageSid"].strip(),
        "from_address": sender,
        "to_address": form["To"].strip(),
        "body": form["Body"],
        "opt_out_type": _opt_out_type(form),
        "classification": classification,
        "received_at": now,
    }
