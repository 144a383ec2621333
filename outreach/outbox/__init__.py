"""The outbox's shared moves: insert idempotently, change state conditionally, cancel pending.

Every state change is ``UPDATE ... WHERE id = :id AND state IN (:expected)``: a duplicate
task, a second beat or a second dispatcher finds nothing to change and stops there.

Locking protocol, the one place it is explained (what makes "never to someone who said stop"
and "never a reminder with the old time" hold under races):

* Whoever changes what a send depends on for a contact — consent (opt-out, unsubscribe, an
  import), an appointment (reschedule, cancel), a crisis pause, a staff reply — first locks
  the contact row (``lock_contacts``) in its transaction.
* Whoever hands messages to a provider locks their contacts (``lock_contacts_of``), then the
  message rows (``lock_messages``), re-checks, and calls the provider while holding the locks.
* The order is always contacts before messages, and contacts in id order, so two lockers never
  wait for each other in a circle.

So a change that commits was either stored before the send began (the send sees it and does
not go) or waited until the provider had answered. On SQLite the transaction already holds
the database's write lock (``BEGIN IMMEDIATE``), which gives the same exclusion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Select, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session, lazyload, load_only

from outreach.db import is_postgres
from outreach.models import PENDING_STATES, Contact, Message, MessageState
from outreach.outbox import rows as rows_module
from outreach.outbox.idsets import among


def insert_messages(session: Session, rows: Sequence[Mapping[str, Any]], *, now: datetime) -> int:
    """Insert outbox rows, silently keeping the existing row for a known idempotency key.

    Returns how many rows were new. Enrolling or booking twice therefore creates nothing.
    ``now`` stamps ``created_at`` and ``updated_at`` (the frequency cap reads the latter).
    """
    return len(insert_messages_keyed(session, rows, now=now))


def insert_messages_keyed(
    session: Session, rows: Sequence[Mapping[str, Any]], *, now: datetime
) -> dict[str, int]:
    """``insert_messages``, returning the new rows' ids by idempotency key (a key already
    present is not in the result)."""
    if not rows:
        return {}
    initial = rows_module.defaults(now)
    values = [{**initial, **row} for row in rows]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(Message)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Message.idempotency_key, Message.id)
    )
    # RETURNING names exactly the new rows on both databases (executemany rowcounts do not).
    return {key: message_id for key, message_id in session.connection().execute(stmt, values)}


def transition(
    session: Session,
    message_id: int,
    expected: Iterable[MessageState | str],
    to: MessageState,
    reason: str | None = None,
    *,
    now: datetime,
    **values: Any,
) -> bool:
    """Move one message from one of ``expected`` to ``to``; False when someone else got there first."""
    stmt = (
        update(Message)
        .where(Message.id == message_id, Message.state.in_([str(s) for s in expected]))
        .values(state=str(to), updated_at=now, **values)
    )
    if reason is not None:
        stmt = stmt.values(state_reason=reason)
    result: CursorResult[Any] = session.execute(stmt)  # type: ignore[assignment]
    return result.rowcount == 1


def cancel_pending(
    session: Session,
    reason: str,
    *,
    now: datetime,
    contact_id: int | None = None,
    channel: str | None = None,
    categories: Iterable[str] | None = None,
    enrollment_id: int | None = None,
    step_keys: Iterable[str] | None = None,
    appointment_id: int | None = None,
    kinds: Iterable[str] | None = None,
) -> int:
    """Cancel every not-yet-sent message matching all the filters given. Returns the count."""
    stmt = update(Message).where(Message.state.in_([str(s) for s in PENDING_STATES]))
    if contact_id is not None:
        stmt = stmt.where(Message.contact_id == contact_id)
    if channel is not None:
        stmt = stmt.where(Message.channel == channel)
    if categories is not None:
        stmt = stmt.where(Message.category.in_(list(categories)))
    if enrollment_id is not None:
        stmt = stmt.where(Message.enrollment_id == enrollment_id)
    if step_keys is not None:
        stmt = stmt.where(Message.step_key.in_(list(step_keys)))
    if appointment_id is not None:
        stmt = stmt.where(Message.appointment_id == appointment_id)
    if kinds is not None:
        stmt = stmt.where(Message.kind.in_(list(kinds)))
    stmt = stmt.values(state=MessageState.CANCELLED, state_reason=reason, updated_at=now)
    result: CursorResult[Any] = session.execute(stmt.execution_options(synchronize_session=False))  # type: ignore[assignment]
    return max(result.rowcount, 0)


def lock_contacts(session: Session, contact_ids: Iterable[int], *, consents: bool = True) -> list[Contact]:
    """Lock contact rows (in id order, so two lockers never deadlock) for the transaction.

    Keep the returned objects referenced while working: the session holds them weakly, and a
    dropped one is fetched again by the next ``session.get``.

    On SQLite the transaction already holds the database's write lock (BEGIN IMMEDIATE).
    """
    ids = sorted(set(contact_ids))
    if not ids:
        return []
    # The tags are not needed to send; consents are (checks read them from the identity map),
    # unless the caller says it reads none (they would then load on first use).
    query: Select[Contact] = (
        select(Contact).where(Contact.id.in_(ids)).order_by(Contact.id).options(lazyload(Contact.tags))
    )
    if not consents:
        query = query.options(lazyload(Contact.consents))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return list(session.scalars(query))


def _owners(session: Session, message_ids: Sequence[int], states: Iterable[str]) -> Select[int | None]:
    return select(Message.contact_id).where(
        among(is_postgres(session), Message.id, list(message_ids)),
        Message.state.in_([str(s) for s in states]),
    )


def lock_contacts_of(session: Session, message_ids: Sequence[int], states: Iterable[str]) -> list[Contact]:
    """Lock the contacts of these messages (those in ``states``), in id order, in one statement:
    the first step of every send, before the message rows themselves (``lock_messages``)."""
    # Only what checking and rendering read: no tags, and consents are loaded per batch.
    query: Select[Contact] = (
        select(Contact)
        .where(Contact.id.in_(_owners(session, message_ids, states)))
        .order_by(Contact.id)
        .options(lazyload("*"))
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return list(session.scalars(query))


def lock_contacts_pause_of(
    session: Session, message_ids: Sequence[int], states: Iterable[str]
) -> dict[int, datetime | None]:
    """``lock_contacts_of`` for a caller that needs the locks and each contact's crisis pause
    (``automation_paused_at``), not the rows."""
    query: Select[int, datetime | None] = (
        select(Contact.id, Contact.automation_paused_at)
        .where(Contact.id.in_(_owners(session, message_ids, states)))
        .order_by(Contact.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return {contact_id: paused_at for contact_id, paused_at in session.execute(query)}


def lock_messages(
    session: Session, message_ids: Sequence[int], only: Sequence[InstrumentedAttribute[Any]] = ()
) -> list[Message]:
    """The message rows, locked (after their contacts), freshly read, without their logs;
    with ``only``, just those columns (any other is loaded if read, one query per row)."""
    query: Select[Message] = (
        select(Message)
        .where(among(is_postgres(session), Message.id, list(message_ids)))
        .order_by(Message.id)
        .options(lazyload("*"))
        .execution_options(populate_existing=True)
    )
    if only:
        query = query.options(load_only(*only))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return list(session.scalars(query))
