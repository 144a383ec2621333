"""Enroll contacts in a campaign: materialise every step as outbox rows at once.

Rules (documented in docs/campaigns.md):

* **Idempotent.** A contact has one enrollment per campaign; enrolling an active or paused
  contact again creates nothing, except steps that were never materialised and now can be
  (e.g. consent granted since): those are added. Idempotency keys are
  ``enrollment:{id}:step:{key}``; a step materialised again (after a pause, a re-sync or a
  re-enrollment) gets ``...:r{n}`` (n = earlier rows for it): ``outreach.outbox.rows``.
* **Enrolling again.** A contact whose enrollment was unenrolled or completed is enrolled
  afresh: the same enrollment becomes active with its start at the new start, and every step
  is scheduled again from there, except steps whose message already went out to the contact
  (sending, sent, delivered, unknown), which are skipped with ``ALREADY_SENT_REASON``.
* **Consent per channel.** A step needs consent for the campaign's category on its channel,
  an address on that channel, and no suppression. A contact with none of the campaign's
  channels usable is refused; one with some is enrolled and the other steps are skipped —
  both reported per contact. Contacts whose automation is paused (crisis) are refused.
* **Timing.** ``planning.Planner`` (``outreach.scheduling.plan_steps``): nominal time (never
  before now), moved into the window (global narrowed by the campaign's), off
  weekends/closures, and past days full under the frequency cap for education/marketing.
* Pause, resume, unenroll and completion: ``outreach.campaigns.lifecycle``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from outreach.campaigns.copy_writer import copy_fresh
from outreach.campaigns.eligibility import find_campaign, load_facts
from outreach.campaigns.lifecycle import RESTARTABLE, complete_finished
from outreach.campaigns.planning import NewEnrollments, Planner, counted_history, policy_and_cap
from outreach.campaigns.rematerialise import (
    insert_rows,
    materialise_outstanding,
    message_row,
    step_history,
    went_out,
)
from outreach.campaigns.reports import ContactOutcome, EnrollmentReport
from outreach.campaigns.sqlite_writer import insert_fresh_sql
from outreach.config import Settings
from outreach.db import is_postgres
from outreach.errors import OutreachError
from outreach.models import Campaign, CampaignStep, Enrollment, EnrollmentState
from outreach.outbox.idsets import IdSets


def enroll(
    session: Session,
    settings: Settings,
    slug: str,
    contact_ids: Iterable[int],
    start: datetime | None = None,
    *,
    now: datetime,
) -> EnrollmentReport:
    """Enroll contacts and materialise their schedule (see module doc). Bulk: a constant
    number of statements whatever the number of contacts and steps."""
    # The campaign row lock serialises everything that creates enrollments in this campaign,
    # so the look-up below is still true when the new enrollments are written.
    campaign = find_campaign(session, slug, lock=True)
    if not campaign.active:
        raise OutreachError(
            f"campaign {slug!r} is inactive (its file was removed); it takes no new enrollments"
        )
    steps = [s for s in campaign.steps if s.active]
    anchor = start or now
    ids = sorted(set(contact_ids))
    facts, existing = load_facts(
        session, ids, campaign.category, {s.channel for s in steps}, enrolled_in=campaign.id
    )
    # An active enrollment whose messages are all done is complete, and so may start afresh.
    active = [eid for eid, state in existing.values() if state == EnrollmentState.ACTIVE]
    finished = set(complete_finished(session, now, enrollment_ids=active)) if active else set()
    existing = {
        cid: (eid, str(EnrollmentState.COMPLETED) if eid in finished else state)
        for cid, (eid, state) in existing.items()
    }
    again = {cid: eid for cid, (eid, state) in existing.items() if state in RESTARTABLE}
    history = step_history(session, list(again.values()), [s.key for s in steps]) if again else {}
    policy, cap = policy_and_cap(session, settings, campaign)
    planned = [cid for cid in ids if cid in facts and (cid not in existing or cid in again)]
    counted = counted_history(session, cap, planned)
    planner = Planner(steps, policy, cap, anchor, now, counted.capped, settings, counted.care)
    report = EnrollmentReport(campaign.slug)
    members: list[tuple[int, int]] = []
    restarts: list[tuple[int, int, int]] = []  # (contact, enrollment, plan)
    repair: list[int] = []
    for cid in ids:
        fact = facts.get(cid)
        if fact is None:
            report.outcomes.append(ContactOutcome(cid, "refused", "no such contact"))
            continue
        if cid in existing and cid not in again:
            current, state = existing[cid]
            if state == EnrollmentState.ACTIVE:
                repair.append(current)
            report.outcomes.append(
                ContactOutcome(cid, "already_enrolled", None if state == "active" else state)
            )
            continue
        eid = again.get(cid)
        # Steps whose message went out in an earlier run of this enrollment are not sent again.
        sent = {s.key for s in steps if eid is not None and went_out(history.get((eid, s.key), []))}
        decision = planner.decide(cid, fact, sent)
        if decision.refused is not None or decision.plan is None:
            report.outcomes.append(ContactOutcome(cid, "refused", decision.refused))
            continue
        if eid is None:
            members.append((cid, decision.plan))
            was = None
        else:
            restarts.append((cid, eid, decision.plan))
            was = f"enrolled again (was {existing[cid][1]})"
        report.outcomes.append(ContactOutcome(cid, "enrolled", was, decision.skipped, decision.messages))
    new = NewEnrollments(campaign, members, planner.plans, anchor, now)
    report.messages_created = _insert_fresh(session, new)
    if restarts:
        report.messages_created += _restart(session, campaign, restarts, planner.plans, history, anchor, now)
    if repair:
        report.messages_created += materialise_outstanding(session, settings, campaign, repair, now)
    return report


def _restart(
    session: Session,
    campaign: Campaign,
    restarts: Sequence[tuple[int, int, int]],
    plans: Sequence[Sequence[tuple[CampaignStep, datetime]]],
    history: Mapping[tuple[int, str], Sequence[tuple[str, str | None]]],
    anchor: datetime,
    now: datetime,
) -> int:
    """Make finished enrollments active again from ``anchor`` and write their plans' messages,
    keyed after the rows each step already has. Returns the messages written."""
    sets = IdSets(session)
    ids = [eid for _cid, eid, _plan in restarts]
    for chunk in sets.batches(ids):
        session.execute(
            update(Enrollment)
            .where(sets.among(Enrollment.id, chunk), Enrollment.state.in_(sorted(RESTARTABLE)))
            .values(
                state=str(EnrollmentState.ACTIVE),
                started_at=anchor,
                paused_at=None,
                stopped_channels=[],
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    rows = [
        message_row(campaign, eid, cid, step, due_at, len(history.get((eid, step.key), ())), now)
        for cid, eid, plan in restarts
        for step, due_at in plans[plan]
    ]
    return insert_rows(session, rows, now)


def _insert_fresh(session: Session, new: NewEnrollments) -> int:
    """Write the new enrollments and one message per step of each one's plan. Returns the
    number of messages.

    No ON CONFLICT here, on purpose. Enrollments: ``enroll`` holds the campaign row lock and
    looked up who is enrolled after taking it; every writer of enrollments goes through it
    (SQLite: ``BEGIN IMMEDIATE`` serialises all writers), and the unique (contact, campaign)
    constraint would raise rather than duplicate if that ever changed. Messages: their keys
    name enrollment ids created by this transaction, which no other transaction can see, so
    nothing else can have written them.
    """
    if not new.members:
        return 0
    if is_postgres(session):
        copy_fresh(session, new)
    else:
        insert_fresh_sql(session, new)
    return new.messages
