"""Campaign files: validation errors name file and field; re-sync semantics on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from outreach.campaigns import lifecycle, reports, sync
from outreach.campaigns.enroll import enroll
from outreach.campaigns.files import CampaignFileError, parse_definition
from outreach.config import Settings
from outreach.models import Message, MessageState
from tests.support.campaigns import (
    SMALL_CAMPAIGN,
    add_contact,
    copy_templates,
    messages_of,
    utc,
    write_campaign,
)

NOW = utc("2026-03-02 17:00")
HEAD = "slug: d\nname: n\ncategory: care\n"


def steps(*timings: str, channel: str = "sms") -> str:
    items = ", ".join(f"{{key: a, channel: {channel}, template: sms/system/help, {t}}}" for t in timings)
    return f"steps: [{items}]\n"


BAD_FILES = [
    ("slug: Demo X\nname: n\ncategory: education\nsteps: []\n", "slug"),
    (
        HEAD.replace("care", "promo") + steps("day: 0, at: '10:00'"),
        "category: must be care, education or marketing",
    ),
    (HEAD + "steps: []\n", "steps: must be a non-empty list"),
    (HEAD + steps("day: 0, at: '10:00'", channel="fax"), "steps[0].channel: must be sms or email"),
    (HEAD + steps("day: 0, at: '25:00'"), "steps[0].at: expected a 24-hour time"),
    (HEAD + steps("after: soon"), "steps[0].after: expected a duration"),
    (HEAD + steps("day: 1, after: '+2h'"), "steps[0]: give either day + at"),
    (HEAD + steps("after: '+1h'", "after: '+2h'"), "steps[1].key: duplicate step key"),
    (HEAD + "window: {start: '07:00', end: '20:00'}\n" + steps("after: '+1h'"), "window: may only narrow"),
    (HEAD + "colour: blue\nsteps: []\n", "unknown field(s) colour"),
    ("slug: [unclosed\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_FILES)
def test_bad_campaign_files_name_the_file_and_the_field(text: str, problem: str) -> None:
    with pytest.raises(CampaignFileError) as caught:
        parse_definition(Path("campaigns/broken.yaml"), text.encode(), Settings())
    assert str(caught.value).startswith("campaigns/broken.yaml: ")
    assert problem in str(caught.value)


def test_a_step_naming_a_missing_template_is_refused(tmp_path: Path) -> None:
    settings = Settings(templates_dir=tmp_path)
    text = HEAD + "steps: [{key: a, channel: email, template: email/nope, day: 0, at: '10:00'}]\n"
    with pytest.raises(
        CampaignFileError, match=r"steps\[0\].template: template file email/nope.txt not found"
    ):
        parse_definition(Path("d.yaml"), text.encode(), settings)


@pytest.fixture
def demo(tmp_path: Path, db_url: str, session: Session) -> Settings:
    settings = copy_templates(tmp_path, db_url, campaigns={"demo": SMALL_CAMPAIGN})
    sync.sync(session, settings, NOW)
    return settings


def test_resync_of_an_unchanged_file_changes_nothing(session: Session, demo: Settings) -> None:
    report = sync.sync(session, demo, NOW)
    assert [(c.slug, c.action) for c in report.campaigns] == [("demo", "unchanged")]


def test_resync_changed_step_moves_pending_messages_and_keeps_sent_ones(
    session: Session, demo: Settings
) -> None:
    sent_contact, pending_contact = add_contact(session), add_contact(session)
    enroll(session, demo, "demo", [sent_contact, pending_contact], now=NOW)
    nudge = next(m for m in messages_of(session, sent_contact) if m.step_key == "nudge")
    session.execute(update(Message).where(Message.id == nudge.id).values(state=MessageState.SENT))
    write_campaign(demo, "demo", SMALL_CAMPAIGN.replace('day: 2\n    at: "12:00"', 'day: 3\n    at: "15:00"'))
    report = sync.sync(session, demo, NOW)
    session.commit()
    session.expire_all()
    assert report.campaigns[0].steps_changed == ["nudge"]
    assert (report.campaigns[0].messages_cancelled, report.campaigns[0].messages_created) == (1, 1)
    sent_nudges = [m for m in messages_of(session, sent_contact) if m.step_key == "nudge"]
    assert [(m.state, m.due_at.strftime("%d %H:%M")) for m in sent_nudges] == [("sent", "04 20:00")]
    nudges = [m for m in messages_of(session, pending_contact) if m.step_key == "nudge"]
    assert [(m.state, m.state_reason) for m in nudges] == [
        ("cancelled", reports.REPLACED_REASON),
        ("scheduled", None),
    ]
    assert nudges[1].due_at == utc("2026-03-05 23:00")  # day 3 at 15:00 Los Angeles
    assert nudges[1].idempotency_key.endswith(":step:nudge:r1")


def test_resync_removed_step_cancels_its_pending_messages(session: Session, demo: Settings) -> None:
    contact = add_contact(session)
    enroll(session, demo, "demo", [contact], now=NOW)
    without_nudge = (
        SMALL_CAMPAIGN.split("  - key: nudge")[0]
        + "  - key: second"
        + SMALL_CAMPAIGN.split("  - key: second")[1]
    )
    write_campaign(demo, "demo", without_nudge)
    report = sync.sync(session, demo, NOW)
    session.expire_all()
    assert report.campaigns[0].steps_removed == ["nudge"]
    states = {m.step_key: (m.state, m.state_reason) for m in messages_of(session, contact)}
    assert states["nudge"] == ("cancelled", sync.REMOVED_REASON)
    assert states["first"][0] == states["second"][0] == "scheduled"


def test_resync_new_step_is_materialised_for_active_enrollments_only(
    session: Session, demo: Settings
) -> None:
    active, paused = add_contact(session), add_contact(session)
    enroll(session, demo, "demo", [active, paused], now=NOW)
    lifecycle.pause(session, contact_ids=[paused], now=NOW)
    added = SMALL_CAMPAIGN + (
        "  - key: third\n    channel: email\n    template: email/education/ketamine/03_your_visit\n"
        '    day: 6\n    at: "10:00"\n'
    )
    write_campaign(demo, "demo", added)
    report = sync.sync(session, demo, NOW)
    assert report.campaigns[0].steps_added == ["third"] and report.campaigns[0].messages_created == 1
    assert [m.step_key for m in messages_of(session, active)][-1] == "third"
    assert "third" not in {m.step_key for m in messages_of(session, paused)}
    # Resuming later picks up the new step too.
    lifecycle.resume(session, demo, contact_ids=[paused], now=NOW)
    assert "third" in {m.step_key for m in messages_of(session, paused) if m.state == "scheduled"}


def test_changing_a_campaigns_category_is_refused(session: Session, demo: Settings) -> None:
    write_campaign(demo, "demo", SMALL_CAMPAIGN.replace("category: education", "category: marketing"))
    with pytest.raises(CampaignFileError, match="a category cannot change"):
        sync.sync(session, demo, NOW)


def test_adding_a_closure_moves_scheduled_messages_off_that_day(session: Session, demo: Settings) -> None:
    contact = add_contact(session)
    enroll(session, demo, "demo", [contact], now=NOW)
    (Path(demo.templates_dir) / "closures.yaml").write_text(
        "closures:\n  - day: 2026-03-04\n    reason: training\n"
    )
    report = sync.sync(session, demo, NOW)
    assert report.closures_added == ["2026-03-04"] and report.messages_moved == 1
    session.expire_all()
    nudge = next(m for m in messages_of(session, contact) if m.step_key == "nudge")
    assert nudge.due_at == utc("2026-03-05 16:00")  # Thursday 08:00 Los Angeles
