"""Materialising steps again for existing enrollments, and cancelling a campaign's steps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, and_, func, select, update
from sqlalchemy.orm import Session

from outreach import outbox
from outreach.campaigns.eligibility import load_facts
from outreach.campaigns.planning import counted_history, policy_and_cap
from outreach.campaigns.reports import REMATERIALISABLE
from outreach.config import Settings
from outreach.delivery.caps import care_first_policy
from outreach.models import (
    PENDING_STATES,
    Campaign,
    CampaignStep,
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
)
from outreach.outbox import rows
from outreach.outbox.idsets import IdSets
from outreach.scheduling import count_days, plan_steps, timing_of


def materialise_outstanding(
    session: Session,
    settings: Settings,
    campaign: Campaign,
    enrollment_ids: Sequence[int],
    now: datetime,
    *,
    step_keys: set[str] | None = None,
) -> int:
    """Materialise, for active enrollments, every active step that has no message yet (or only
    ones cancelled by a pause or a re-sync) and that the contact can receive. Returns rows created."""
    steps = [s for s in campaign.steps if s.active and (step_keys is None or s.key in step_keys)]
    if not steps or not enrollment_ids:
        return 0
    keys = [s.key for s in steps]
    sets = IdSets(session)
    # Cheap first pass: enrollments where every requested step has a row that is pending or
    # went out are done (``is_blocked`` decides the rest).
    blocking = Message.state.in_(sorted(PENDING_OR_OUT))
    candidates: list[int] = []
    for chunk in sets.batches(sorted(set(enrollment_ids))):
        full = set(
            session.scalars(
                select(Message.enrollment_id)
                .where(of_enrollments(sets, chunk), Message.step_key.in_(keys), blocking)
                .group_by(Message.enrollment_id)
                .having(func.count(func.distinct(Message.step_key)) >= len(keys))
            )
        )
        candidates.extend(eid for eid in chunk if eid not in full)
    enrollments: list[tuple[int, int, datetime, list[str]]] = []
    for chunk in sets.batches(candidates):
        query = select(
            Enrollment.id, Enrollment.contact_id, Enrollment.started_at, Enrollment.stopped_channels
        ).where(sets.among(Enrollment.id, chunk), Enrollment.state == str(EnrollmentState.ACTIVE))
        if sets.postgres:
            # Held until commit, so completion never marks an enrollment we are adding to.
            query = query.with_for_update()
        enrollments.extend(session.execute(query))
    history = step_history(session, candidates, keys)
    earlier = {step: len(had) for step, had in history.items()}
    blocked = {step for step, had in history.items() if is_blocked(had)}
    contact_ids = sorted({e[1] for e in enrollments})
    facts, _ = load_facts(session, contact_ids, campaign.category, {s.channel for s in steps})
    policy, cap = policy_and_cap(session, settings, campaign)
    counted = counted_history(session, cap, contact_ids)
    rows: list[dict[str, Any]] = []
    for eid, cid, started_at, stopped in enrollments:
        fact = facts.get(cid)
        if fact is None or fact.zone is None:
            continue
        todo = [
            s
            for s in steps
            if (eid, s.key) not in blocked and s.channel in fact.usable and s.channel not in (stopped or [])
        ]
        if not todo:
            continue
        # Care first: days the patient's reminders fill are closed to this campaign.
        capped, care = counted.capped.get(cid, ()), counted.care.get(cid, ())
        taken = count_days(capped, fact.zone)
        mine = care_first_policy(policy, settings, fact.zone, care, capped)
        due = plan_steps(
            [timing_of(s) for s in todo], started_at, fact.zone, mine, now=now, cap=cap, taken=taken
        )
        rows.extend(
            message_row(campaign, eid, cid, s, due[s.key], earlier.get((eid, s.key), 0), now) for s in todo
        )
    return insert_rows(session, rows, now)


def insert_rows(session: Session, rows: Sequence[dict[str, Any]], now: datetime) -> int:
    """``outbox.insert_messages`` in chunks that keep each statement's parameters bounded."""
    created = 0
    for start in range(0, len(rows), 5000):
        created += outbox.insert_messages(session, rows[start : start + 5000], now=now)
    return created


# A message that reached, or may have reached, the patient: a re-enrollment does not send its
# step again.
WENT_OUT_STATES = frozenset(
    str(s) for s in (MessageState.SENDING, MessageState.SENT, MessageState.DELIVERED, MessageState.UNKNOWN)
)


PENDING_OR_OUT = WENT_OUT_STATES | {str(s) for s in PENDING_STATES}


def went_out(had: Sequence[tuple[str, str | None]]) -> bool:
    """Did any of a step's messages (``step_history``) go out?"""
    return any(state in WENT_OUT_STATES for state, _reason in had)


def is_blocked(had: Sequence[tuple[str, str | None]]) -> bool:
    """Does a step's history (``step_history``) keep it from being materialised again? Yes if
    a message is pending or went out, or if the latest one ended for a reason that is final
    (failed, skipped, cancelled by an opt-out...); rows before a re-enrollment do not count."""
    if any(state in PENDING_OR_OUT for state, _reason in had):
        return True
    state, reason = had[-1]
    return not (state == MessageState.CANCELLED and reason in REMATERIALISABLE)


def step_history(
    session: Session, enrollment_ids: Sequence[int], keys: Sequence[str]
) -> dict[tuple[int, str], list[tuple[str, str | None]]]:
    """Per (enrollment, step key): the state and reason of every message the step has had,
    oldest first."""
    history: dict[tuple[int, str], list[tuple[str, str | None]]] = {}
    sets = IdSets(session)
    for chunk in sets.batches(sorted(set(enrollment_ids))):
        for eid, key, state, reason in session.execute(
            select(Message.enrollment_id, Message.step_key, Message.state, Message.state_reason)
            .where(of_enrollments(sets, chunk), Message.step_key.in_(keys))
            .order_by(Message.id)
        ):
            if eid is not None and key is not None:
                history.setdefault((eid, key), []).append((state, reason))
    return history


def message_row(
    campaign: Campaign,
    enrollment_id: int,
    contact_id: int,
    step: CampaignStep,
    due_at: datetime,
    earlier: int,
    now: datetime,
) -> dict[str, Any]:
    return {
        "idempotency_key": rows.enrollment_step_key(enrollment_id, step.key, earlier),
        "contact_id": contact_id,
        "channel": step.channel,
        "category": campaign.category,
        "kind": str(rows.DEFAULT_KIND),
        "template": step.template,
        "enrollment_id": enrollment_id,
        "step_key": step.key,
        "due_at": due_at,
        "created_at": now,
        "updated_at": now,
    }


def of_enrollments(sets: IdSets, enrollment_ids: Sequence[int]) -> ColumnElement[bool]:
    """Messages of these enrollments, found through their contacts. Messages are indexed by
    contact, not by enrollment: an index kept up to date on each of the 500k rows a bulk
    enrollment writes costs more than these look-ups gain from it."""
    owners = select(Enrollment.contact_id).where(sets.among(Enrollment.id, enrollment_ids))
    return and_(Message.contact_id.in_(owners), sets.among(Message.enrollment_id, enrollment_ids))


def cancel_campaign_steps(
    session: Session, campaign_id: int, step_keys: Sequence[str], reason: str, now: datetime
) -> int:
    """Cancel the pending messages of these steps in every enrollment of the campaign."""
    in_campaign = select(Enrollment.id).where(Enrollment.campaign_id == campaign_id).scalar_subquery()
    # Through the contacts (see of_enrollments), and then their rows of this campaign.
    members = select(Enrollment.contact_id).where(Enrollment.campaign_id == campaign_id)
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Message)
        .where(
            Message.state.in_([str(s) for s in PENDING_STATES]),
            Message.step_key.in_(list(step_keys)),
            Message.contact_id.in_(members),
            Message.enrollment_id.in_(in_campaign),
        )
        .values(state=str(MessageState.CANCELLED), state_reason=reason, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return max(result.rowcount, 0)
