"""An enrollment's life: pause, resume, unenroll, and completion.

An active enrollment becomes **completed** once every message it has is done: sent,
delivered or otherwise terminal (``DONE_STATES``). ``complete_finished`` makes that move; the
beat runs it every few minutes (``scheduler.py``) and ``enroll`` runs it for the enrollments it
is asked about, so a finished series can be enrolled again at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, and_, bindparam, select, update
from sqlalchemy.orm import Session

from outreach.campaigns.eligibility import ENROLLMENTS, find_campaign
from outreach.campaigns.rematerialise import materialise_outstanding, of_enrollments
from outreach.campaigns.reports import PAUSED_REASON, UNENROLLED_REASON, ChangeReport
from outreach.config import Settings
from outreach.errors import OutreachError
from outreach.models import (
    PENDING_STATES,
    TERMINAL_STATES,
    Campaign,
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
)
from outreach.outbox.idsets import IdSets

# A message that will change no more by itself (a ``sent`` one may still be confirmed
# delivered, but it has left): what completion waits for.
DONE_STATES = frozenset(str(s) for s in TERMINAL_STATES | {MessageState.SENT})
# Enrollments that enrolling again starts afresh (``outreach.campaigns.enroll``).
RESTARTABLE = frozenset({str(EnrollmentState.UNENROLLED), str(EnrollmentState.COMPLETED)})


def complete_finished(
    session: Session, now: datetime, *, enrollment_ids: Sequence[int] | None = None
) -> list[int]:
    """Mark active enrollments completed once they have messages and all are done; returns
    their ids. ``enrollment_ids`` limits the look to those enrollments.

    Whoever adds messages to an existing enrollment holds its row lock until commit
    (``materialise_outstanding`` selects it FOR UPDATE; resume and re-enrollment update it).
    So on PostgreSQL the finished enrollments are first locked, skipping any such writer's,
    and then checked again by a statement that sees what the writers committed: an enrollment
    is never completed under a message being added to it. (SQLite serialises writers.)
    """
    # Through the contact, as everywhere (see ``of_enrollments``): messages have no index on
    # their enrollment.
    mine = and_(Message.contact_id == Enrollment.contact_id, Message.enrollment_id == Enrollment.id)
    finished = and_(
        Enrollment.state == str(EnrollmentState.ACTIVE),
        select(Message.id).where(mine).exists(),
        ~select(Message.id).where(mine, Message.state.not_in(sorted(DONE_STATES))).exists(),
    )
    sets = IdSets(session)
    candidates: list[int] = []
    if enrollment_ids is None:
        batches: Iterable[Sequence[int] | None] = [None]
    else:
        batches = sets.batches(sorted(set(enrollment_ids)))
    for batch in batches:
        query = select(Enrollment.id).where(finished)
        if batch is not None:
            query = query.where(sets.among(Enrollment.id, batch))
        if sets.postgres:
            query = query.with_for_update(skip_locked=True)
        candidates.extend(session.scalars(query))
    completed: list[int] = []
    for chunk in sets.batches(candidates):
        completed.extend(
            session.scalars(
                update(Enrollment)
                .where(sets.among(Enrollment.id, chunk), finished)
                .values(state=str(EnrollmentState.COMPLETED), updated_at=now)
                .returning(Enrollment.id)
                .execution_options(synchronize_session=False)
            )
        )
    return completed


def _cancel_enrollments(session: Session, enrollment_ids: Sequence[int], reason: str, now: datetime) -> int:
    cancelled = 0
    sets = IdSets(session)
    for chunk in sets.batches(enrollment_ids):
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Message)
            .where(of_enrollments(sets, chunk), Message.state.in_([str(s) for s in PENDING_STATES]))
            .values(state=str(MessageState.CANCELLED), state_reason=reason, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        cancelled += max(result.rowcount, 0)
    return cancelled


def _select(
    session: Session,
    *,
    slug: str | None,
    contact_ids: Iterable[int] | None,
    everything: bool,
    states: Iterable[str],
) -> list[tuple[int, int, int, datetime, datetime | None]]:
    """(id, contact_id, campaign_id, started_at, paused_at) of the enrollments a command names."""
    ids = sorted(set(contact_ids)) if contact_ids is not None else None
    if slug is None and ids is None and not everything:
        raise OutreachError("say which enrollments: a campaign slug, contacts, or all")
    query = select(
        Enrollment.id,
        Enrollment.contact_id,
        Enrollment.campaign_id,
        Enrollment.started_at,
        Enrollment.paused_at,
    ).where(Enrollment.state.in_([str(s) for s in states]))
    if slug is not None:
        query = query.where(Enrollment.campaign_id == find_campaign(session, slug).id)
    if ids is None:
        return list(session.execute(query))
    found: list[tuple[int, int, int, datetime, datetime | None]] = []
    sets = IdSets(session)
    for chunk in sets.batches(ids):
        found.extend(session.execute(query.where(sets.among(Enrollment.contact_id, chunk))))
    return found


def _set_state(
    session: Session, ids: Sequence[int], expected: str, values: dict[str, Any], now: datetime
) -> list[int]:
    """Conditionally move enrollments; returns the ids that moved (a concurrent change wins)."""
    moved: list[int] = []
    sets = IdSets(session)
    for chunk in sets.batches(ids):
        moved.extend(
            session.scalars(
                update(Enrollment)
                .where(sets.among(Enrollment.id, chunk), Enrollment.state == expected)
                .values(updated_at=now, **values)
                .returning(Enrollment.id)
                .execution_options(synchronize_session=False)
            )
        )
    return moved


def _stop(
    session: Session,
    *,
    slug: str | None,
    contact_ids: Iterable[int] | None,
    everything: bool,
    states: Sequence[EnrollmentState],
    values: dict[str, Any],
    reason: str,
    now: datetime,
) -> ChangeReport:
    """Move the named enrollments out of ``states`` and cancel their pending messages."""
    found = _select(session, slug=slug, contact_ids=contact_ids, everything=everything, states=states)
    ids = [f[0] for f in found]
    moved: list[int] = []
    for state in states:
        moved += _set_state(session, ids, state, values, now)
    return ChangeReport(len(moved), _cancel_enrollments(session, moved, reason, now))


def pause(
    session: Session,
    *,
    slug: str | None = None,
    contact_ids: Iterable[int] | None = None,
    everything: bool = False,
    now: datetime,
) -> ChangeReport:
    """Pause active enrollments: pending messages are cancelled (``PAUSED_REASON``)."""
    return _stop(
        session,
        slug=slug,
        contact_ids=contact_ids,
        everything=everything,
        states=[EnrollmentState.ACTIVE],
        values={"state": str(EnrollmentState.PAUSED), "paused_at": now},
        reason=PAUSED_REASON,
        now=now,
    )


def resume(
    session: Session,
    settings: Settings,
    *,
    slug: str | None = None,
    contact_ids: Iterable[int] | None = None,
    everything: bool = False,
    now: datetime,
) -> ChangeReport:
    """Resume paused enrollments: the start moves forward by the time spent paused, so the
    remaining steps keep their spacing; steps not yet sent are materialised again."""
    found = _select(
        session, slug=slug, contact_ids=contact_ids, everything=everything, states=[EnrollmentState.PAUSED]
    )
    resumed: dict[int, list[int]] = {}
    table = ENROLLMENTS
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.state == str(EnrollmentState.PAUSED))
        .values(
            state=str(EnrollmentState.ACTIVE),
            started_at=bindparam("b_started"),
            paused_at=None,
            updated_at=now,
        )
    )
    for eid, _cid, campaign_id, started_at, paused_at in found:
        shifted = started_at + (now - paused_at) if paused_at is not None else started_at
        moved: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            statement, {"b_id": eid, "b_started": shifted}
        )
        if moved.rowcount == 1:
            resumed.setdefault(campaign_id, []).append(eid)
    created = 0
    for campaign_id, ids in resumed.items():
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        created += materialise_outstanding(session, settings, campaign, ids, now)
    return ChangeReport(sum(len(v) for v in resumed.values()), messages_created=created)


def unenroll(
    session: Session,
    *,
    slug: str | None = None,
    contact_ids: Iterable[int] | None = None,
    everything: bool = False,
    now: datetime,
) -> ChangeReport:
    """End enrollments: pending messages cancelled. Enrolling again starts a fresh schedule."""
    return _stop(
        session,
        slug=slug,
        contact_ids=contact_ids,
        everything=everything,
        states=[EnrollmentState.ACTIVE, EnrollmentState.PAUSED],
        values={"state": str(EnrollmentState.UNENROLLED), "paused_at": None},
        reason=UNENROLLED_REASON,
        now=now,
    )
