"""`outreach campaigns preview`: what one contact gets from a campaign, and when.

For a contact with an active or paused enrollment the answer is the schedule that exists: the
enrollment's messages with their due times, states and reasons, and the campaign's steps it
has no message for. For anyone else it is exactly what ``enroll`` would create now: the same
look-up (``eligibility.load_facts``) and the same ``planning.Planner``, so the two never
disagree. (Such a contact has no not-yet-sent message of this campaign: an unenrolled
enrollment's pending messages were cancelled, a completed one has none; nothing of the
campaign itself is counted against the frequency cap.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.campaigns.eligibility import Facts, find_campaign, load_facts, zone_named
from outreach.campaigns.lifecycle import RESTARTABLE
from outreach.campaigns.planning import Planner, counted_history, policy_and_cap
from outreach.campaigns.rematerialise import PENDING_OR_OUT, of_enrollments, step_history, went_out
from outreach.config import Settings
from outreach.content.lint import SAMPLE_UNSUBSCRIBE_PATH, check_rendered
from outreach.content.rendering import RenderError, base_context, load_meta, render_template
from outreach.errors import NotFound, OutreachError
from outreach.models import Campaign, CampaignStep, Contact, Enrollment, Message
from outreach.outbox.idsets import IdSets


@dataclass
class StepPreview:
    key: str
    channel: str
    template: str
    due_at: datetime | None  # None: the step has no message and would get none
    local_due_at: datetime | None
    would_send: bool
    reason: str | None = None
    # For an enrolled contact: the message's id and state (None for a step without a message).
    message_id: int | None = None
    state: str | None = None
    subject: str | None = None
    text: str | None = None
    encoding: str | None = None
    segments: int | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["due_at"] = self.due_at.isoformat() if self.due_at else None
        data["local_due_at"] = self.local_due_at.isoformat() if self.local_due_at else None
        return data


def preview(
    session: Session, settings: Settings, slug: str, contact_id: int, *, start: datetime | None, now: datetime
) -> list[StepPreview]:
    campaign = find_campaign(session, slug)
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact with id {contact_id}")
    zone = zone_named(contact.timezone)
    if zone is None:
        raise OutreachError(f"contact {contact_id}: unknown time zone; fix it before previewing")
    steps = [s for s in campaign.steps if s.active]
    facts, _ = load_facts(session, [contact_id], campaign.category, {s.channel for s in steps})
    fact = facts[contact_id]
    enrollment = session.scalar(
        select(Enrollment).where(Enrollment.contact_id == contact_id, Enrollment.campaign_id == campaign.id)
    )
    if enrollment is not None and enrollment.state not in RESTARTABLE:
        items = _scheduled(session, enrollment, steps, fact, zone)
    else:
        anchor = start or now
        items = _planned(session, settings, campaign, steps, contact_id, fact, enrollment, anchor, now)
    for item in items:
        _render(settings, contact, campaign, item)
    return items


def _scheduled(
    session: Session, enrollment: Enrollment, steps: list[CampaignStep], fact: Facts, zone: ZoneInfo
) -> list[StepPreview]:
    """The enrollment's messages as they are, and its steps that have none."""
    messages = session.scalars(
        select(Message)
        .where(of_enrollments(IdSets(session), [enrollment.id]))
        .order_by(Message.due_at, Message.id)
    )
    items = [
        StepPreview(
            m.step_key or "",
            m.channel,
            m.template or "",
            m.due_at,
            m.due_at.astimezone(zone),
            m.state in PENDING_OR_OUT,
            m.state_reason,
            m.id,
            m.state,
        )
        for m in messages
    ]
    have = {item.key for item in items}
    for step in steps:
        if step.key not in have:
            why = fact.missing.get(step.channel, "not scheduled for this enrollment")
            items.append(StepPreview(step.key, step.channel, step.template, None, None, False, why))
    return items


def _planned(
    session: Session,
    settings: Settings,
    campaign: Campaign,
    steps: list[CampaignStep],
    contact_id: int,
    fact: Facts,
    enrollment: Enrollment | None,
    anchor: datetime,
    now: datetime,
) -> list[StepPreview]:
    """What ``enroll`` would create now, step by step, with why a step would not be sent."""
    assert fact.zone is not None
    policy, cap = policy_and_cap(session, settings, campaign)
    history = counted_history(session, cap, [contact_id])
    planner = Planner(steps, policy, cap, anchor, now, history.capped, settings, history.care)
    sent: set[str] = set()
    if enrollment is not None:
        earlier = step_history(session, [enrollment.id], [s.key for s in steps])
        sent = {s.key for s in steps if went_out(earlier.get((enrollment.id, s.key), []))}
    decision = planner.decide(contact_id, fact, sent)
    due = {s.key: at for s, at in planner.plans[decision.plan]} if decision.plan is not None else {}
    # A step that would not be sent is shown at the time it would have had in the series.
    nominal = {s.key: at for s, at in planner.plans[planner.plan(contact_id, fact, steps)]}
    items = []
    for step in steps:
        at = due.get(step.key, nominal[step.key])
        why = decision.refused or decision.skipped.get(step.key)
        items.append(
            StepPreview(
                step.key, step.channel, step.template, at, at.astimezone(fact.zone), step.key in due, why
            )
        )
    return items


def _render(settings: Settings, contact: Contact, campaign: Campaign, item: StepPreview) -> None:
    """The step's text as the contact would read it, with the template linter's warnings."""
    unsubscribe = settings.public_base_url.rstrip("/") + SAMPLE_UNSUBSCRIBE_PATH
    try:
        context = base_context(
            settings, contact=contact, category=campaign.category, unsubscribe_url=unsubscribe
        )
        rendered = render_template(settings, item.template, item.channel, context)
        meta = load_meta(settings, item.template, item.channel)
    except RenderError as exc:
        item.warnings.append(str(exc))
        return
    item.subject, item.text = rendered.subject, rendered.text
    item.encoding, item.segments = rendered.encoding, rendered.segments
    problems = check_rendered(settings, item.template, item.channel, campaign.category, meta, rendered)
    item.warnings.extend(f"{p.severity}: {p.message}" for p in problems)
