"""What enrolling creates: the steps each contact can receive and their due instants (plans
shared by contacts with the same answers), handed to a writer as ``NewEnrollments``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from outreach.campaigns.eligibility import Facts
from outreach.campaigns.reports import ALREADY_SENT_REASON
from outreach.closures import campaign_policy, load_closures
from outreach.config import Settings
from outreach.delivery.caps import (
    CAPPED_CATEGORIES,
    PlanningHistory,
    cap_of,
    care_first_policy,
    planning_history,
)
from outreach.models import Campaign, CampaignStep
from outreach.scheduling import FrequencyCap, SendPolicy, count_days, plan_steps, timing_of


@dataclass(frozen=True)
class NewEnrollments:
    """Enrollments to write: each member is (contact id, index into ``plans``); a plan is the
    steps a contact gets with their due instants, shared by contacts with the same answers."""

    campaign: Campaign
    members: list[tuple[int, int]]
    plans: list[list[tuple[CampaignStep, datetime]]]
    started_at: datetime
    created_at: datetime

    @property
    def messages(self) -> int:
        return sum(len(self.plans[plan]) for _contact, plan in self.members)


def policy_and_cap(
    session: Session, settings: Settings, campaign: Campaign
) -> tuple[SendPolicy, FrequencyCap | None]:
    policy = campaign_policy(settings, campaign, load_closures(session))
    cap = cap_of(settings) if campaign.category in CAPPED_CATEGORIES else None
    return policy, cap


def counted_history(
    session: Session, cap: FrequencyCap | None, contact_ids: Sequence[int]
) -> PlanningHistory:
    """What planning these contacts counts (``caps.planning_history``); nothing to read when
    the campaign is not capped."""
    return planning_history(session, contact_ids) if cap is not None else PlanningHistory()


@dataclass(frozen=True)
class Decision:
    """What enrolling one contact creates: ``refused`` (why nothing), or a plan (an index in
    ``Planner.plans``) and the steps left out of it with the reason for each."""

    refused: str | None = None
    plan: int | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    messages: int = 0


@dataclass
class Planner:
    """Plans for one campaign from one start: what ``enroll`` writes and ``preview`` shows.

    ``history`` is, per contact, the instants of their messages counted by the frequency cap
    (``caps.planning_history``); ``care`` the instants of their care messages
    (``caps.planning_history``): days those fill up to the daily limit are closed to a capped
    campaign, so a visit's reminders are never the ones that give way (care first, see
    ``outreach.delivery.caps``). Contacts with the same zone, usable channels, cap history and
    closed days share one plan.
    """

    steps: Sequence[CampaignStep]
    policy: SendPolicy
    cap: FrequencyCap | None
    anchor: datetime
    now: datetime
    history: Mapping[int, list[datetime]]
    settings: Settings
    care: Mapping[int, list[datetime]] = field(default_factory=dict)
    plans: list[list[tuple[CampaignStep, datetime]]] = field(default_factory=list)
    _plan_ids: dict[tuple[object, ...], int] = field(default_factory=dict)
    _choices: dict[int, tuple[list[CampaignStep], dict[str, str]]] = field(default_factory=dict)
    _fresh: dict[int, Decision] = field(default_factory=dict)

    def decide(self, contact_id: int, fact: Facts, sent: Collection[str] = ()) -> Decision:
        """What enrolling this contact creates. ``sent``: keys of the steps whose message went
        out to the contact in an earlier run of the enrollment; they are not planned again."""
        # A contact with nothing sent, no capped history and no care messages is decided by
        # its Facts alone, and Facts objects are shared by contacts with the same answers: a
        # first enrollment of 100k patients then plans a handful of times, not 100k.
        fresh = not sent and not self.history.get(contact_id) and not self.care.get(contact_id)
        if not fresh:
            return self._decide(contact_id, fact, sent)
        decision = self._fresh.get(id(fact))
        if decision is None:
            decision = self._fresh[id(fact)] = self._decide(contact_id, fact, sent)
        return decision

    def _decide(self, contact_id: int, fact: Facts, sent: Collection[str]) -> Decision:
        if fact.zone is None:
            return Decision("the contact's time zone is unknown")
        if fact.paused:
            return Decision("automation is paused for this contact")
        usable, skipped = self.choose(fact)
        if not usable:
            return Decision("; ".join(sorted(set(fact.missing.values()))) or "the campaign has no steps")
        todo = [s for s in usable if s.key not in sent]
        if not todo:
            return Decision(f"every step was {ALREADY_SENT_REASON}")
        again = {s.key: ALREADY_SENT_REASON for s in usable if s.key in sent}
        return Decision(None, self.plan(contact_id, fact, todo), {**skipped, **again}, len(todo))

    def choose(self, fact: Facts) -> tuple[list[CampaignStep], dict[str, str]]:
        """The steps the contact can receive, and why each other step is skipped."""
        # Facts objects are shared by contacts with the same answers: one choice per object.
        choice = self._choices.get(id(fact))
        if choice is None:
            choice = self._choices[id(fact)] = (
                [s for s in self.steps if s.channel in fact.usable],
                {s.key: fact.missing[s.channel] for s in self.steps if s.channel not in fact.usable},
            )
        return choice

    def plan(self, contact_id: int, fact: Facts, usable: list[CampaignStep]) -> int:
        """The index in ``plans`` of the contact's plan for ``usable`` (from ``choose``, or
        fewer steps)."""
        assert fact.zone is not None
        instants = self.history.get(contact_id)
        taken = count_days(instants, fact.zone) if instants else None
        policy = self.policy
        if self.cap is not None:
            care = self.care.get(contact_id, ())
            policy = care_first_policy(policy, self.settings, fact.zone, care, instants or ())
        signature = (
            fact.zone.key,
            tuple(s.key for s in usable),
            tuple(sorted(taken.items())) if taken else (),
            policy.closures,
        )
        plan_id = self._plan_ids.get(signature)
        if plan_id is None:
            plan_id = self._plan_ids[signature] = len(self.plans)
            due = plan_steps(
                [timing_of(s) for s in usable],
                self.anchor,
                fact.zone,
                policy,
                now=self.now,
                cap=self.cap,
                taken=taken,
            )
            self.plans.append([(s, due[s.key]) for s in usable])
        return plan_id
