"""`outreach campaigns preview`: what one contact would receive from a campaign, and when."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from outreach.campaigns.eligibility import find_campaign
from outreach.closures import campaign_policy, load_closures
from outreach.config import Settings
from outreach.contacts import consent
from outreach.content.lint import SAMPLE_UNSUBSCRIBE_PATH, check_rendered
from outreach.content.rendering import RenderError, base_context, load_meta, render_template
from outreach.delivery.caps import CAPPED_CATEGORIES, cap_of, planned_instants
from outreach.errors import NotFound
from outreach.models import Contact
from outreach.scheduling import count_days, plan_steps, timing_of


@dataclass
class StepPreview:
    key: str
    channel: str
    template: str
    due_at: datetime
    local_due_at: datetime
    would_send: bool
    reason: str | None = None
    subject: str | None = None
    text: str | None = None
    encoding: str | None = None
    segments: int | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["due_at"] = self.due_at.isoformat()
        data["local_due_at"] = self.local_due_at.isoformat()
        return data


def preview(
    session: Session, settings: Settings, slug: str, contact_id: int, *, start: datetime | None, now: datetime
) -> list[StepPreview]:
    campaign = find_campaign(session, slug)
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact with id {contact_id}")
    zone = ZoneInfo(contact.timezone)
    steps = [s for s in campaign.steps if s.active]
    policy = campaign_policy(settings, campaign, load_closures(session))
    capped = campaign.category in CAPPED_CATEGORIES
    taken = count_days(planned_instants(session, [contact_id]).get(contact_id, []), zone) if capped else None
    due = plan_steps(
        [timing_of(s) for s in steps],
        start or now,
        zone,
        policy,
        now=now,
        cap=cap_of(settings) if capped else None,
        taken=taken,
    )
    unsubscribe = settings.public_base_url.rstrip("/") + SAMPLE_UNSUBSCRIBE_PATH
    previews = []
    for step in steps:
        allowed = consent.has_consent(session, contact_id, step.channel, campaign.category)
        item = StepPreview(
            step.key,
            step.channel,
            step.template,
            due[step.key],
            due[step.key].astimezone(zone),
            allowed,
            None if allowed else f"no {campaign.category} consent on {step.channel}",
        )
        try:
            context = base_context(
                settings, contact=contact, category=campaign.category, unsubscribe_url=unsubscribe
            )
            rendered = render_template(settings, step.template, step.channel, context)
            meta = load_meta(settings, step.template, step.channel)
        except RenderError as exc:
            item.warnings.append(str(exc))
        else:
            item.subject, item.text = rendered.subject, rendered.text
            item.encoding, item.segments = rendered.encoding, rendered.segments
            problems = check_rendered(
                settings, step.template, step.channel, campaign.category, meta, rendered
            )
            item.warnings.extend(f"{p.severity}: {p.message}" for p in problems)
        previews.append(item)
    return previews
