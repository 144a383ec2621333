"""Enroll contacts in a campaign: materialise every step as outbox rows at once.

Rules (documented in docs/campaigns.md):

* **Idempotent.** A contact is enrolled in a campaign at most once; enrolling again creates
  nothing, except steps that were never materialised and now can be (e.g. consent granted
  since): those are added. Idempotency keys are ``enrollment:{id}:step:{key}``; a step
  materialised again after a pause or a re-sync gets ``...:r{n}`` (n = earlier rows for it).
* **Consent per channel.** A step needs consent for the campaign's category on its channel,
  an address on that channel, and no suppression. A contact with none of the campaign's
  channels usable is refused; one with some is enrolled and the other steps are skipped —
  both reported per contact. Contacts whose automation is paused (crisis) are refused.
* **Timing.** ``outreach.scheduling.plan_steps``: nominal time (never before now), moved into
  the window (global narrowed by the campaign's), off weekends/closures, and past days full
  under the frequency cap for education/marketing.
* **Pause** cancels the enrollment's pending messages (reason ``PAUSED_REASON``); **resume**
  moves the start forward by the time spent paused and re-materialises the steps that were
  not sent. **Unenroll** cancels pending messages for good.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from outreach.campaigns.copy_writer import copy_fresh
from outreach.campaigns.eligibility import (
    find_campaign,
    load_facts,
)
from outreach.campaigns.planning import NewEnrollments, Planner, policy_and_cap
from outreach.campaigns.rematerialise import (
    materialise_outstanding,
)
from outreach.campaigns.reports import (
    ContactOutcome,
    EnrollmentReport,
)
from outreach.campaigns.sqlite_writer import insert_fresh_sql
from outreach.config import Settings
from outreach.db import is_postgres
from outreach.delivery.caps import planned_instants
from outreach.errors import OutreachError
from outreach.models import (
    EnrollmentState,
)


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
    policy, cap = policy_and_cap(session, settings, campaign)
    fresh = [cid for cid in ids if cid in facts and cid not in existing]
    taken_all = planned_instants(session, fresh) if cap is not None and fresh else {}

    planner = Planner(steps, policy, cap, anchor, now, taken_all)
    report = EnrollmentReport(campaign.slug)
    members: list[tuple[int, int]] = []
    repair: list[int] = []
    for cid in ids:
        fact = facts.get(cid)
        if fact is None:
            report.outcomes.append(ContactOutcome(cid, "refused", "no such contact"))
            continue
        if cid in existing:
            eid, state = existing[cid]
            if state == EnrollmentState.UNENROLLED:
                report.outcomes.append(
                    ContactOutcome(cid, "refused", "unenrolled from this campaign earlier")
                )
                continue
            if state == EnrollmentState.ACTIVE:
                repair.append(eid)
            report.outcomes.append(
                ContactOutcome(cid, "already_enrolled", None if state == "active" else state)
            )
            continue
        if fact.zone is None:
            report.outcomes.append(ContactOutcome(cid, "refused", "the contact's time zone is unknown"))
            continue
        if fact.paused:
            report.outcomes.append(ContactOutcome(cid, "refused", "automation is paused for this contact"))
            continue
        usable, skipped = planner.choose(fact)
        if not usable:
            reason = "; ".join(sorted(set(fact.missing.values()))) or "the campaign has no steps"
            report.outcomes.append(ContactOutcome(cid, "refused", reason))
            continue
        members.append((cid, planner.plan(cid, fact, usable)))
        report.outcomes.append(
            ContactOutcome(cid, "enrolled", skipped_steps=dict(skipped), messages=len(usable))
        )
    report.messages_created = _insert_fresh(
        session, NewEnrollments(campaign, members, planner.plans, anchor, now)
    )
    if repair:
        report.messages_created += materialise_outstanding(session, settings, campaign, repair, now)
    return report


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
