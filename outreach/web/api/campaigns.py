"""/api/v1/campaigns: list, read, preview for a contact; enroll, pause, resume, unenroll."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from outreach.campaigns import eligibility, lifecycle, reports
from outreach.campaigns.enroll import enroll as enroll_contacts
from outreach.campaigns.overview import campaign_summaries
from outreach.campaigns.preview import preview
from outreach.web.api.core import ERROR_RESPONSES, ApiCall, ApiRoute, staff_call
from outreach.web.api.schemas import Id, Instant, Model, Text

router = APIRouter(prefix="/campaigns", tags=["campaigns"], route_class=ApiRoute, responses=ERROR_RESPONSES)

Staff = Annotated[ApiCall, Depends(staff_call)]
Slug = Annotated[Text, Path(min_length=1, max_length=64)]


class Step(BaseModel):
    key: str
    channel: str
    template: str
    day: int | None
    at: str | None
    after_seconds: int | None


class Campaign(BaseModel):
    slug: str
    name: str
    category: str
    active: bool
    window: str
    no_weekends: bool
    enrollments: int = Field(description="Active and paused enrollments.")
    steps: list[Step]


class CampaignList(BaseModel):
    campaigns: list[Campaign]


class StepPreview(BaseModel):
    key: str
    channel: str
    template: str
    due_at: str
    local_due_at: str
    would_send: bool
    reason: str | None
    subject: str | None
    text: str | None
    encoding: str | None
    segments: int | None
    warnings: list[str]


class Preview(BaseModel):
    campaign: str
    contact_id: int
    steps: list[StepPreview]


class Who(Model):
    """Contacts named by id, or every contact with a tag (or both)."""

    contact_ids: Annotated[list[Id], Field(default_factory=list, max_length=10_000)]
    tag: Annotated[Text | None, Field(min_length=1, max_length=64)] = None

    @model_validator(mode="after")
    def someone(self) -> Who:
        if not self.contact_ids and self.tag is None:
            raise ValueError("name contacts (contact_ids) or a tag")
        return self

    def ids(self, call: ApiCall) -> list[int]:
        tagged = eligibility.contact_ids_for_tag(call.session, self.tag.strip().lower()) if self.tag else []
        return sorted(set(self.contact_ids) | set(tagged))


class EnrollRequest(Who):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"contact_ids": [12, 13]}, {"tag": "new-patient"}]},
    )

    start: Instant | None = Field(None, description="When day 0 begins (default: now).")


class ContactOutcome(BaseModel):
    contact_id: int
    outcome: str = Field(description="enrolled, already_enrolled or refused")
    reason: str | None = Field(description="Why a contact was refused.")
    skipped_steps: dict[str, str]
    messages: int


class EnrollmentReport(BaseModel):
    campaign: str
    enrolled: int
    already_enrolled: int
    refused: int
    messages_created: int
    contacts: list[ContactOutcome]


class ChangeReport(BaseModel):
    enrollments: int
    messages_cancelled: int
    messages_created: int


@router.get("", name="campaigns.list", response_model=CampaignList)
def list_campaigns(call: Staff) -> dict[str, Any]:
    call.about("campaign", None)
    return {"campaigns": campaign_summaries(call.session, call.settings)}


@router.get("/{slug}", name="campaigns.read", response_model=Campaign)
def read_campaign(call: Staff, slug: Slug) -> dict[str, Any]:
    call.about("campaign", slug)
    return campaign_summaries(call.session, call.settings, slug)[0]


@router.get("/{slug}/preview", name="campaigns.preview", response_model=Preview)
def preview_campaign(
    call: Staff,
    slug: Slug,
    contact_id: Annotated[Id, Query()],
    start: Annotated[Instant | None, Query(description="When day 0 begins (default: now).")] = None,
) -> dict[str, Any]:
    """What this contact would receive, when, and whether consent allows it."""
    call.about("contact", contact_id, campaign=slug)
    steps = preview(call.session, call.settings, slug, contact_id, start=start, now=call.now)
    return {"campaign": slug, "contact_id": contact_id, "steps": [s.as_dict() for s in steps]}


@router.post("/{slug}/enrollments", name="enrollments.enroll", response_model=EnrollmentReport)
def enroll(call: Staff, slug: Slug, body: EnrollRequest) -> dict[str, Any]:
    """Enroll contacts: each one is enrolled, already enrolled, or refused with the reason."""
    report = enroll_contacts(call.session, call.settings, slug, body.ids(call), body.start, now=call.now)
    call.about("campaign", slug, enrolled=len(report.enrolled), refused=len(report.refused))
    return report.as_dict()


def _changed(report: reports.ChangeReport) -> dict[str, Any]:
    return {
        "enrollments": report.enrollments,
        "messages_cancelled": report.messages_cancelled,
        "messages_created": report.messages_created,
    }


@router.post("/{slug}/enrollments/pause", name="enrollments.pause", response_model=ChangeReport)
def pause(call: Staff, slug: Slug, body: Who) -> dict[str, Any]:
    call.about("campaign", slug)
    return _changed(lifecycle.pause(call.session, slug=slug, contact_ids=body.ids(call), now=call.now))


@router.post("/{slug}/enrollments/resume", name="enrollments.resume", response_model=ChangeReport)
def resume(call: Staff, slug: Slug, body: Who) -> dict[str, Any]:
    call.about("campaign", slug)
    report = lifecycle.resume(
        call.session, call.settings, slug=slug, contact_ids=body.ids(call), now=call.now
    )
    return _changed(report)


@router.post("/{slug}/enrollments/unenroll", name="enrollments.unenroll", response_model=ChangeReport)
def unenroll(call: Staff, slug: Slug, body: Who) -> dict[str, Any]:
    call.about("campaign", slug)
    return _changed(lifecycle.unenroll(call.session, slug=slug, contact_ids=body.ids(call), now=call.now))
