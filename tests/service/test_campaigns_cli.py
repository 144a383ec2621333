"""The campaign, template, enrollment and message commands, through the real CLI app."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner, Result

from outreach.cli.app import app
from outreach.db import make_engine, make_session_factory
from tests.support.campaigns import SMALL_CAMPAIGN, add_contact, copy_templates


@pytest.fixture
def templates_dir(tmp_path: Path, db_url: str) -> Path:
    return Path(copy_templates(tmp_path, db_url, campaigns={"demo": SMALL_CAMPAIGN}).templates_dir)


@pytest.fixture
def cli(cli: CliRunner, templates_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The shared CLI fixture, reading this test's copy of the templates."""
    monkeypatch.setenv("OUTREACH_TEMPLATES_DIR", str(templates_dir))
    return cli


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, list(args))


def contacts(db_url: str, **kwargs: object) -> int:
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session, session.begin():
        contact_id = add_contact(session, **kwargs)  # type: ignore[arg-type]
    engine.dispose()
    return contact_id


def test_sync_then_list_json(cli: CliRunner) -> None:
    synced = run(cli, "campaigns", "sync")
    assert synced.exit_code == 0, synced.stderr
    assert "demo: created" in synced.stdout
    listed = json.loads(run(cli, "campaigns", "list", "--json").stdout)
    assert [(c["slug"], c["category"], c["window"], len(c["steps"])) for c in listed] == [
        ("demo", "education", "08:00-20:00", 3)
    ]


def test_sync_of_a_bad_file_names_file_and_field(cli: CliRunner, templates_dir: Path) -> None:
    (templates_dir / "campaigns" / "broken.yaml").write_text(
        "slug: broken\nname: B\ncategory: spam\nsteps: []\n"
    )
    result = run(cli, "campaigns", "sync")
    assert result.exit_code == 1
    assert "broken.yaml: category: must be care, education or marketing" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_templates_check_passes_and_fails(cli: CliRunner, templates_dir: Path) -> None:
    good = run(cli, "templates", "check")
    assert good.exit_code == 0, good.stdout
    (templates_dir / "sms" / "system" / "bad.txt").write_text("Reply YES to confirm your {{ thing }}")
    bad = run(cli, "templates", "check")
    assert bad.exit_code == 1
    assert "FAIL sms/system/bad: template sms/system/bad: undefined variable" in bad.stdout


def test_enroll_list_messages_pause_resume_unenroll(cli: CliRunner, db_url: str) -> None:
    run(cli, "campaigns", "sync")
    patient = contacts(db_url, tags=["series"], consents={"email": ["education"]})
    refused = contacts(db_url, tags=["series"], consents={})
    enrolled = run(cli, "enroll", "demo", "--tag", "series")
    assert enrolled.exit_code == 0, enrolled.stderr
    assert "1 enrolled, 0 already enrolled, 1 refused; 2 message(s) scheduled" in enrolled.stdout
    assert f"contact {refused}: refused: no education consent" in enrolled.stderr
    assert f"contact {patient}: step nudge skipped: no education consent on sms" in enrolled.stderr
    again = json.loads(run(cli, "enroll", "demo", "--contact", str(patient), "--json").stdout)
    assert (again["already_enrolled"], again["messages_created"]) == (1, 0)

    listed = json.loads(run(cli, "messages", "list", "--contact", str(patient), "--json").stdout)
    assert [m["state"] for m in listed] == ["scheduled", "scheduled"]
    first = listed[0]
    assert set(first) >= {
        "id",
        "contact_id",
        "channel",
        "category",
        "template",
        "due_at",
        "local_due_at",
        "state",
        "attempts",
        "idempotency_key",
    }
    due, local_due = datetime.fromisoformat(first["due_at"]), datetime.fromisoformat(first["local_due_at"])
    assert due.utcoffset() == timedelta(0) and due == local_due
    assert local_due.utcoffset() == due.astimezone(ZoneInfo("America/Los_Angeles")).utcoffset()
    shown = json.loads(run(cli, "messages", "show", str(first["id"]), "--json").stdout)
    assert shown["attempts_log"] == [] and shown["events"] == [] and shown["step_key"] == "first"

    paused = run(cli, "pause", "--contact", str(patient))
    assert "1 enrollment(s); 2 pending message(s) cancelled" in paused.stdout
    assert json.loads(run(cli, "messages", "list", "--status", "scheduled", "--json").stdout) == []
    resumed = run(cli, "resume", "demo")
    assert "1 enrollment(s); 0 pending message(s) cancelled, 2 scheduled" in resumed.stdout
    ended = run(cli, "unenroll", "--all", "--json")
    assert json.loads(ended.stdout)["messages_cancelled"] == 2


def test_enroll_mistakes_get_one_line_errors(cli: CliRunner) -> None:
    run(cli, "campaigns", "sync")
    assert "no campaign with slug 'nope'" in run(cli, "enroll", "nope", "--contact", "1").stderr
    assert "give --contact ID" in run(cli, "enroll", "demo").stderr
    bad_start = run(cli, "enroll", "demo", "--contact", "1", "--start", "tomorrow")
    assert bad_start.exit_code == 1 and 'expected "YYYY-MM-DD HH:MM"' in bad_start.stderr
    assert "say which enrollments" in run(cli, "pause").stderr
    assert "unknown message state 'lost'" in run(cli, "messages", "list", "--status", "lost").stderr


def test_preview_shows_local_times_segments_and_consent(cli: CliRunner, db_url: str) -> None:
    run(cli, "campaigns", "sync")
    patient = contacts(db_url, first_name="Rosa", consents={"email": ["education"]})
    result = run(
        cli,
        "campaigns",
        "preview",
        "demo",
        "--contact",
        str(patient),
        "--start",
        "2099-03-02 09:00",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    steps = json.loads(result.stdout)
    assert [s["local_due_at"][:16] for s in steps] == [
        "2099-03-02T10:00",
        "2099-03-04T12:00",
        "2099-03-06T10:00",
    ]
    nudge = steps[1]
    assert (nudge["would_send"], nudge["reason"], nudge["segments"]) == (
        False,
        "no education consent on sms",
        1,
    )
    assert steps[0]["subject"] == "A note from Bay Area Wellness" and "Hi Rosa," in steps[0]["text"]
    shown = run(cli, "campaigns", "preview", "demo", "--contact", str(patient), "--start", "2099-03-02 09:00")
    assert "first email Mon 2 Mar 2099, 10:00 Pacific\n" in shown.stdout


def test_preview_shows_the_clinic_clock_then_the_patients_where_it_differs(
    cli: CliRunner, db_url: str
) -> None:
    run(cli, "campaigns", "sync")
    patient = contacts(db_url, timezone="America/New_York")
    shown = run(cli, "campaigns", "preview", "demo", "--contact", str(patient), "--start", "2099-03-02 09:00")
    assert shown.exit_code == 0, shown.stderr
    # Staff read the clinic's wall clock first; the patient's local 10:00 follows.
    words = " ".join(shown.stdout.split())  # the terminal may wrap the line
    clinic_then_patient = "07:00 Pacific (Mon 2 Mar 2099, 10:00 Eastern for the patient)"
    assert f"first email Mon 2 Mar 2099, {clinic_then_patient}" in words


OTHER_SERIES = SMALL_CAMPAIGN.replace("slug: demo", "slug: other").replace("Demo series", "Other series")


def scheduled_times(cli: CliRunner, patient: int, campaign: str) -> list[str]:
    listed = run(cli, "messages", "list", "--contact", str(patient), "--campaign", campaign, "--json")
    return sorted(m["due_at"] for m in json.loads(listed.stdout) if m["state"] == "scheduled")


def preview_json(cli: CliRunner, patient: int, *start: str) -> list[dict[str, object]]:
    result = run(cli, "campaigns", "preview", "demo", "--contact", str(patient), *start, "--json")
    assert result.exit_code == 0, result.stderr
    steps: list[dict[str, object]] = json.loads(result.stdout)
    return steps


def test_preview_of_an_enrolled_patient_shows_the_schedule_that_exists(
    cli: CliRunner, db_url: str, templates_dir: Path
) -> None:
    (templates_dir / "campaigns" / "other.yaml").write_text(OTHER_SERIES)
    run(cli, "campaigns", "sync")
    patient = contacts(db_url)
    for campaign in ("other", "demo"):
        enrolled = run(cli, "enroll", campaign, "--contact", str(patient), "--start", "2099-03-02 09:00")
        assert enrolled.exit_code == 0, enrolled.stderr
    # The patient's own demo messages are what the preview shows, not something they push later.
    steps = preview_json(cli, patient)
    assert sorted(str(s["due_at"]) for s in steps) == scheduled_times(cli, patient, "demo")
    assert [(s["state"], s["would_send"]) for s in steps] == [("scheduled", True)] * 3
    run(cli, "pause", "demo", "--contact", str(patient))
    paused = preview_json(cli, patient)
    assert {(s["state"], s["reason"]) for s in paused} == {("cancelled", "the enrollment is paused")}
    shown = run(cli, "campaigns", "preview", "demo", "--contact", str(patient))
    assert "the messages scheduled for this enrollment" in shown.stdout
    assert "cancelled: the enrollment is paused" in shown.stdout


def test_preview_of_a_patient_not_enrolled_is_what_enrolling_then_creates(
    cli: CliRunner, db_url: str, templates_dir: Path
) -> None:
    (templates_dir / "campaigns" / "other.yaml").write_text(OTHER_SERIES)
    run(cli, "campaigns", "sync")
    patient = contacts(db_url, consents={"email": ["education"]})
    # Another series on the same days: the frequency cap moves the demo steps to other days.
    run(cli, "enroll", "other", "--contact", str(patient), "--start", "2099-03-02 09:00")
    steps = preview_json(cli, patient, "--start", "2099-03-02 09:00")
    assert [s["state"] for s in steps] == [None] * 3
    planned = sorted(str(s["due_at"]) for s in steps if s["would_send"])
    assert len(planned) == 2 and [s["reason"] for s in steps if not s["would_send"]] == [
        "no education consent on sms"
    ]
    enrolled = run(cli, "enroll", "demo", "--contact", str(patient), "--start", "2099-03-02 09:00")
    assert enrolled.exit_code == 0, enrolled.stderr
    assert scheduled_times(cli, patient, "demo") == planned
    assert scheduled_times(cli, patient, "other")[0] not in planned


def test_enrolling_now_reads_the_process_clock_that_the_settings_fix(
    cli: CliRunner, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 09:00 Pacific in 2099, as a demo or test run fixes it: "now" is that instant, not the wall clock.
    monkeypatch.setenv("OUTREACH_CLOCK", "2099-03-02T17:00:00+00:00")
    run(cli, "campaigns", "sync")
    patient = contacts(db_url, consents={"email": ["education"], "sms": ["education"]})
    expected = sorted(str(s["due_at"]) for s in preview_json(cli, patient, "--start", "2099-03-02 09:00"))
    enrolled = run(cli, "enroll", "demo", "--contact", str(patient))
    assert enrolled.exit_code == 0, enrolled.stderr
    assert scheduled_times(cli, patient, "demo") == expected
