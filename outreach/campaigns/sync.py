"""Syncing campaign definition files (``outreach.campaigns.files``) into the database.

Re-sync of an edited campaign (``sync``), per step key:

* unchanged step — nothing happens;
* **changed** step (channel, template or timing) — its pending messages (``scheduled`` or
  ``queued``) are cancelled with the reason ``REPLACED_REASON`` and re-materialised from the
  new definition for active enrollments; messages already sent (or sending) stay as they are;
* **removed** step — marked inactive; its pending messages are cancelled;
* **new** step — materialised for every active enrollment (times computed from the
  enrollment's start; a time already past is sent at the next opening);
* a changed campaign window or weekend rule counts as a change of every step.

A campaign's category cannot change (consent is per category): use a new slug. A campaign whose
file is deleted is deactivated (no new enrollments); its pending messages are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import closures
from outreach.campaigns import rematerialise, reports
from outreach.campaigns.files import CampaignDefinition, CampaignFileError, StepDefinition, load_definitions
from outreach.config import Settings
from outreach.models import Campaign, CampaignStep, Enrollment, EnrollmentState

REMOVED_REASON = "step removed from the campaign"


@dataclass
class CampaignSync:
    slug: str
    action: str  # created | updated | unchanged | deactivated
    steps_added: list[str] = field(default_factory=list)
    steps_changed: list[str] = field(default_factory=list)
    steps_removed: list[str] = field(default_factory=list)
    messages_cancelled: int = 0
    messages_created: int = 0


@dataclass
class SyncReport:
    campaigns: list[CampaignSync] = field(default_factory=list)
    closures_added: list[str] = field(default_factory=list)
    closures_removed: list[str] = field(default_factory=list)
    messages_moved: int = 0


def _step_signature(step: CampaignStep | StepDefinition) -> tuple[object, ...]:
    if isinstance(step, CampaignStep):
        return (step.channel, step.template, step.day_offset, step.at_time, step.delay_seconds)
    return (step.channel, step.template, step.day_offset, step.at, step.delay_seconds)


def sync(session: Session, settings: Settings, now: datetime) -> SyncReport:
    """Load every campaign file and the closure calendar into the database (see module doc)."""
    definitions = load_definitions(settings)
    report = SyncReport()
    by_slug = {c.slug: c for c in session.scalars(select(Campaign))}
    for definition in definitions:
        campaign = by_slug.get(definition.slug)
        if campaign is None:
            campaign = _create(session, definition, now)
            report.campaigns.append(
                CampaignSync(definition.slug, "created", [s.key for s in definition.steps])
            )
            continue
        report.campaigns.append(_update(session, settings, campaign, definition, now))
    for slug, campaign in sorted(by_slug.items()):
        if campaign.active and slug not in {d.slug for d in definitions}:
            campaign.active = False
            report.campaigns.append(CampaignSync(slug, "deactivated"))
    added, removed, moved = closures.sync_closures(session, settings, now)
    report.closures_added, report.closures_removed, report.messages_moved = added, removed, moved
    return report


def _create(session: Session, definition: CampaignDefinition, now: datetime) -> Campaign:
    campaign = Campaign(
        slug=definition.slug,
        name=definition.name,
        description=definition.description,
        category=definition.category,
        window_start=definition.window_start,
        window_end=definition.window_end,
        no_weekends=definition.no_weekends,
        definition_hash=definition.definition_hash,
        active=True,
        synced_at=now,
    )
    campaign.steps = [
        CampaignStep(
            key=s.key,
            position=i,
            channel=s.channel,
            template=s.template,
            day_offset=s.day_offset,
            at_time=s.at,
            delay_seconds=s.delay_seconds,
            active=True,
        )
        for i, s in enumerate(definition.steps)
    ]
    session.add(campaign)
    session.flush()
    return campaign


def _update(
    session: Session,
    settings: Settings,
    campaign: Campaign,
    definition: CampaignDefinition,
    now: datetime,
) -> CampaignSync:
    result = CampaignSync(definition.slug, "unchanged")
    if campaign.definition_hash == definition.definition_hash and campaign.active:
        return result
    if campaign.category != definition.category:
        raise CampaignFileError(
            f"{definition.source}: category: campaign {definition.slug!r} is {campaign.category}; "
            "a category cannot change (consent is per category) - use a new slug"
        )
    timing_changed = (campaign.window_start, campaign.window_end, campaign.no_weekends) != (
        definition.window_start,
        definition.window_end,
        definition.no_weekends,
    )
    campaign.name, campaign.description = definition.name, definition.description
    campaign.window_start, campaign.window_end = definition.window_start, definition.window_end
    campaign.no_weekends = definition.no_weekends
    campaign.definition_hash, campaign.active, campaign.synced_at = definition.definition_hash, True, now
    existing = {s.key: s for s in campaign.steps}
    wanted = {s.key for s in definition.steps}
    for position, step_def in enumerate(definition.steps):
        step = existing.get(step_def.key)
        if step is None or not step.active:
            if step is None:
                step = CampaignStep(key=step_def.key)
                campaign.steps.append(step)
            result.steps_added.append(step_def.key)
        elif timing_changed or _step_signature(step) != _step_signature(step_def):
            result.steps_changed.append(step_def.key)
        step.position, step.channel, step.template = position, step_def.channel, step_def.template
        step.day_offset, step.at_time, step.delay_seconds = (
            step_def.day_offset,
            step_def.at,
            step_def.delay_seconds,
        )
        step.active = True
    for key, step in existing.items():
        if key not in wanted and step.active:
            step.active = False
            step.position = len(definition.steps) + step.position
            result.steps_removed.append(key)
    session.flush()
    if result.steps_removed:
        result.messages_cancelled += rematerialise.cancel_campaign_steps(
            session, campaign.id, result.steps_removed, REMOVED_REASON, now
        )
    if result.steps_changed:
        result.messages_cancelled += rematerialise.cancel_campaign_steps(
            session, campaign.id, result.steps_changed, reports.REPLACED_REASON, now
        )
    touched = result.steps_added + result.steps_changed
    if touched:
        active_ids = list(
            session.scalars(
                select(Enrollment.id).where(
                    Enrollment.campaign_id == campaign.id, Enrollment.state == str(EnrollmentState.ACTIVE)
                )
            )
        )
        result.messages_created = rematerialise.materialise_outstanding(
            session, settings, campaign, active_ids, now, step_keys=set(touched)
        )
    result.action = "updated"
    return result
