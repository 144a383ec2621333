"""Templates: the linter over the real templates and over bad fixtures; rendering rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from outreach.campaigns import files, sync
from outreach.campaigns.enroll import enroll
from outreach.config import Settings, load_settings
from outreach.content.lint import check_templates
from outreach.content.rendering import RenderError, render_message, render_template
from tests.support.campaigns import TEMPLATES, add_contact, copy_templates, messages_of, utc

NOW = utc("2026-03-02 17:00")


def test_the_shipped_templates_pass_the_linter() -> None:
    report = check_templates(load_settings(templates_dir=TEMPLATES))
    assert report.errors == [], "\n".join(f"{p.template}: {p.message}" for p in report.errors)
    names = {c.name for c in report.checked}
    for required in (
        "sms/system/help",
        "sms/system/opt_out_confirmation",
        "sms/system/crisis_reply",
        "sms/system/opt_in_confirmation",
        "sms/system/oncall_alert",
        "email/system/oncall_alert",
    ):
        assert required in names
    sms = [c for c in report.checked if c.channel == "sms" and c.name.startswith("sms/system/")]
    assert all(c.segments == 1 and c.encoding == "GSM-7" for c in sms)


def test_the_education_series_fits_the_cap_with_one_short_sms() -> None:
    settings = load_settings(templates_dir=TEMPLATES)
    (series,) = [d for d in files.load_definitions(settings) if d.slug == "ketamine-education"]
    assert series.category == "education"
    assert [s.channel for s in series.steps].count("sms") == 1
    assert 14 <= max(s.day_offset or 0 for s in series.steps) <= 21
    report = check_templates(settings)
    assert not [p for p in report.problems if p.template.startswith("campaigns/")], "no step moved by the cap"


BAD = {
    "sms/care/too_long.txt": "---\ncategory: care\n---\n" + "Your visit is soon. " * 10,
    "sms/care/curly.txt": "---\ncategory: care\n---\nIt’s {{ clinic_display_name }}, está bien 😊",
    "sms/care/treatment.txt": "---\ncategory: care\n---\nYour infusion is tomorrow.",
    "sms/care/reviewed.txt": "---\ncategory: care\nreviewed_for: [infusion]\n---\nYour infusion is tomorrow.",
    "sms/care/reply_yes.txt": "---\ncategory: care\n---\nReply YES to confirm.",
    "sms/care/reply_cancel.txt": "---\ncategory: care\n---\nText 'cancel' to cancel your visit.",
    "sms/care/undefined.txt": "---\ncategory: care\n---\nHi {{ nickname }}",
    "email/education/subject.txt": "---\nsubject: About ketamine\n---\nHello",
    "email/education/subject.html": "<p>Hello</p>",
    "email/education/no_subject.txt": "Hello",
    "email/education/no_subject.html": "<p>Hello</p>",
}


@pytest.fixture
def bad_templates(tmp_path: Path) -> Settings:
    settings = copy_templates(tmp_path, "sqlite://", campaigns={})
    for name, text in BAD.items():
        path = Path(settings.templates_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return settings


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("sms/care/too_long", "care SMS is 2 segments"),
        ("sms/care/curly", "non-GSM character(s) 'á' (U+00E1), '😊' (U+1F60A)"),
        ("sms/care/treatment", "treatment/diagnosis word(s) in SMS body: infusion"),
        ("sms/care/reply_yes", "asks the patient to reply YES"),
        ("sms/care/reply_cancel", "asks the patient to reply CANCEL"),
        ("sms/care/undefined", "undefined variable ('nickname' is undefined)"),
        ("email/education/subject", "treatment/diagnosis word(s) in email subject: ketamine"),
        ("email/education/no_subject", "email front matter needs a subject"),
    ],
)
def test_linter_fails_bad_templates_with_the_reason(
    bad_templates: Settings, template: str, reason: str
) -> None:
    report = check_templates(bad_templates)
    messages = [p.message for p in report.errors if p.template == template]
    assert any(reason in m for m in messages), messages
    assert not report.ok


def test_a_template_reviewed_for_a_word_may_use_it(bad_templates: Settings) -> None:
    report = check_templates(bad_templates)
    assert [p for p in report.errors if p.template == "sms/care/reviewed"] == []


def test_html_is_escaped_and_text_is_not(tmp_path: Path) -> None:
    settings = copy_templates(tmp_path, "sqlite://", campaigns={})
    context = {
        "clinic_display_name": "A & B",
        "clinic_phone": "1",
        "clinic_address": "Main St",
        "clinic_email": "x@y",
        "first_name": "<b>Al</b>",
        "category": "care",
        "unsubscribe_url": None,
    }
    rendered = render_template(settings, "email/education/ketamine/01_what_it_is", "email", context)
    assert "Hi <b>Al</b>," in rendered.text
    assert "Hi &lt;b&gt;Al&lt;/b&gt;," in (rendered.html or "")
    assert "Unsubscribe" not in (rendered.html or "")  # care mail, no link given


def test_templates_render_in_the_sandbox(tmp_path: Path) -> None:
    settings = copy_templates(tmp_path, "sqlite://", campaigns={})
    (Path(settings.templates_dir) / "sms" / "evil.txt").write_text(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    )
    with pytest.raises(RenderError, match="sms/evil"):
        render_template(settings, "sms/evil", "sms", {})


def test_render_message_fills_contact_and_clinic_and_requires_unsubscribe_for_education_mail(
    session: Session, tmp_path: Path, db_url: str
) -> None:
    settings = copy_templates(tmp_path, db_url)
    sync.sync(session, settings, NOW)
    contact = add_contact(session, first_name="Rosa")
    enroll(session, settings, "ketamine-education", [contact], now=NOW)
    email = next(m for m in messages_of(session, contact) if m.channel == "email")
    sms = next(m for m in messages_of(session, contact) if m.channel == "sms")
    with pytest.raises(RenderError, match="needs an unsubscribe link"):
        render_message(session, settings, email)
    rendered = render_message(session, settings, email, unsubscribe_url="https://clinic.example/u/TOKEN")
    assert rendered.subject == "A note from Bay Area Wellness"
    assert "Hi Rosa," in rendered.text and "https://clinic.example/u/TOKEN" in (rendered.html or "")
    assert "100 Main Street, Walnut Creek, CA 94596" in rendered.text
    text = render_message(session, settings, sms)
    assert text.text.startswith("Hi Rosa, it's Bay Area Wellness.") and "925-289-1430" in text.text
    assert (text.encoding, text.segments) == ("GSM-7", 1)
