"""Campaigns as the CLI's `campaigns list` and the JSON API show them: steps, window, counts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach.campaigns.files import window_label
from outreach.config import Settings
from outreach.errors import NotFound
from outreach.models import Campaign, Enrollment, EnrollmentState


def campaign_summaries(session: Session, settings: Settings, slug: str | None = None) -> list[dict[str, Any]]:
    """Every campaign by slug (or the one named), with active steps and live enrollment counts."""
    query = select(Campaign).order_by(Campaign.slug)
    if slug is not None:
        query = query.where(Campaign.slug == slug)
    campaigns = list(session.scalars(query))
    if slug is not None and not campaigns:
        raise NotFound(f"no campaign {slug!r}")
    counts: dict[int, int] = dict(
        list(
            session.execute(
                select(Enrollment.campaign_id, func.count())
                .where(
                    Enrollment.state.in_([EnrollmentState.ACTIVE, EnrollmentState.PAUSED]),
                    Enrollment.campaign_id.in_([c.id for c in campaigns]),
                )
                .group_by(Enrollment.campaign_id)
            )
        )
    )
    return [
        {
            "slug": c.slug,
            "name": c.name,
            "category": c.category,
            "active": c.active,
            "window": window_label(c, settings),
            "no_weekends": c.no_weekends if c.no_weekends is not None else settings.no_weekends,
            "enrollments": counts.get(c.id, 0),
            "steps": [
                {
                    "key": s.key,
                    "channel": s.channel,
                    "template": s.template,
                    "day": s.day_offset,
                    "at": s.at_time,
                    "after_seconds": s.delay_seconds,
                }
                for s in c.steps
                if s.active
            ],
        }
        for c in campaigns
    ]
