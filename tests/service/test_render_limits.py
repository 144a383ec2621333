"""A hostile or broken template fails its own message with a reason; the batch goes out.

Templates are edited by staff, so a template may overflow the sandbox's range, build a
gigabyte string, recurse without end or loop for minutes. Each must end as a failed message
(at send time) or a per-file error (in the linter), never a stuck batch or a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from outreach.cli import common
from outreach.cli.app import app
from outreach.config import Settings, load_settings
from outreach.content.bounded import MAX_OUTPUT_CHARS
from outreach.content.lint import check_templates
from outreach.content.rendering import RenderError, render_template
from outreach.delivery.send import NoLimit, Services, send_batch
from outreach.models import Message, MessageState
from outreach.outbox import transition
from tests.service.test_sending import NOON_LA
from tests.support.campaigns import copy_templates
from tests.support.factories import STAMPED_AT, make_contact, make_message
from tests.support.fakes import FakeClock, FakeProvider

HOSTILE = {
    "range": "{{ range(10**7) | list }}",
    "huge_string": "{{ 'x' * 10**9 }}",
    "huge_power": "{{ 10 ** (10 ** 7) }}",
    "long_output": "{% for i in range(99999) %}{{ 'y' * 1000 }}{% endfor %}",
    "recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "slow_loop": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
}


def _with_templates(tmp_path: Path, db_url: str, name: str) -> Settings:
    root = tmp_path / "templates"
    (root / "sms").mkdir(parents=True)
    (root / "sms" / "good.txt").write_text("Hi {{ first_name }}, see you soon. {{ clinic_phone }}")
    (root / "sms" / "hostile.txt").write_text(HOSTILE[name])
    return load_settings(database_url=db_url, templates_dir=root)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_rendering_a_hostile_template_is_a_render_error(tmp_path: Path, name: str) -> None:
    settings = _with_templates(tmp_path, "sqlite://", name)
    with pytest.raises(RenderError, match="template sms/hostile"):
        render_template(settings, "sms/hostile", "sms", {})


def test_output_over_the_bound_names_the_limit(tmp_path: Path) -> None:
    settings = _with_templates(tmp_path, "sqlite://", "long_output")
    with pytest.raises(RenderError, match=f"over {MAX_OUTPUT_CHARS} characters"):
        render_template(settings, "sms/hostile", "sms", {})


@pytest.mark.parametrize("name", ["range", "huge_string", "recursion"])
def test_a_hostile_template_fails_its_message_while_the_batch_is_sent(
    tmp_path: Path, db_url: str, session_factory: sessionmaker[Session], name: str
) -> None:
    settings = _with_templates(tmp_path, db_url, name)
    ids: list[int] = []
    with session_factory.begin() as session:
        for template in ("sms/good", "sms/hostile", "sms/good"):
            message = make_message(
                session, make_contact(session), template=template, body_override=None,
                due_at=NOON_LA - timedelta(minutes=1),
            )
            transition(session, message.id, [MessageState.SCHEDULED], MessageState.QUEUED, now=STAMPED_AT)
            ids.append(message.id)
    provider = FakeProvider()
    services = Services(
        settings=settings, session_factory=session_factory,
        providers={"sms": provider, "email": FakeProvider(channel="email", can_reconcile=False)},
        limiter=NoLimit(), clock=FakeClock(NOON_LA), sleep=lambda _s: None,
    )
    outcomes = send_batch(services, ids)
    assert [outcomes[i] for i in ids] == [MessageState.SENT, MessageState.FAILED, MessageState.SENT]
    assert len(provider.sent) == 2 and all(o.body.startswith("Hi Pat") for o in provider.sent)
    with session_factory() as session:
        failed = session.get_one(Message, ids[1])
        assert failed.state == MessageState.FAILED
        assert failed.state_reason is not None and "sms/hostile" in failed.state_reason


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    common.settings.cache_clear()
    yield CliRunner()
    common.settings.cache_clear()


def test_the_linter_reports_a_hostile_template_by_file_and_still_prints_json(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = copy_templates(tmp_path, "sqlite://", campaigns={})
    (Path(settings.templates_dir) / "sms" / "appointments" / "hostile.txt").write_text(HOSTILE["range"])
    monkeypatch.setenv("OUTREACH_TEMPLATES_DIR", str(settings.templates_dir))
    result = cli.invoke(app, ["templates", "check", "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    problems = [p for p in document["problems"] if p["template"] == "sms/appointments/hostile"]
    assert problems and problems[0]["severity"] == "error"
    assert "OverflowError" in problems[0]["message"]
    assert check_templates(settings).errors  # the same through the service call
