"""The whole system for end-to-end tests: PostgreSQL, Redis, the sandbox, and real web, Celery
worker and beat processes configured only through the environment, as in production."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from pydantic import SecretStr
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from outreach.celeryapp import make_celery
from outreach.config import Settings, load_settings
from outreach.db import make_engine, make_session_factory
from outreach.models import Closure, Contact, InboundMessage, Message, MessageState
from tests.support import services
from tests.support.processes import Stack, free_port, stack
from tests.support.sandbox import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, RunningSandbox, running_sandbox
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
ONCALL_SMS = "+14155550199"
ONCALL_EMAIL = "oncall@clinic.example.org"
SETTLED = {
    MessageState.SENT,
    MessageState.DELIVERED,
    MessageState.UNDELIVERED,
    MessageState.FAILED,
    MessageState.CANCELLED,
    MessageState.SKIPPED,
    MessageState.EXPIRED,
}


def environment(settings: Settings) -> dict[str, str]:
    """Settings as OUTREACH_* variables (and Twilio's own names), the way production passes them."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue  # unset (e.g. OUTREACH_CLOCK): the process uses its default
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, datetime):
            text = value.isoformat()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            text = json.dumps(value)
        elif isinstance(value, time):
            text = value.strftime("%H:%M")
        else:
            text = str(value)
        env[f"OUTREACH_{name.upper()}"] = text
    env["TWILIO_ACCOUNT_SID"] = settings.twilio_account_sid
    env["TWILIO_AUTH_TOKEN"] = settings.twilio_auth_token.get_secret_value()
    return env


def daytime_zone(now: datetime | None = None) -> str:
    """A real IANA zone where it is about noon right now, so automated messages are inside the
    sending window whenever the suite runs."""
    hour = (now or datetime.now(UTC)).hour
    offset = 12 - hour
    if offset > 12:
        offset -= 24
    if offset < -11:
        offset += 24
    # Etc/GMT names have the sign inverted: Etc/GMT+8 is UTC-8.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


@dataclass
class System:
    settings: Settings
    sandbox: RunningSandbox
    processes: Stack
    factory: sessionmaker[Session]
    celery: Celery

    def run_task(self, name: str, **kwargs: Any) -> None:
        """Publish a task the way beat does (for sweeps whose beat interval is longer than a test)."""
        self.celery.send_task(name, kwargs=kwargs)

    def message(self, message_id: int) -> Message:
        """The message with its attempts and events, readable after the session is gone."""
        with self.factory() as session:
            message = session.get(
                Message,
                message_id,
                options=[selectinload(Message.attempts_log), selectinload(Message.events)],
            )
            assert message is not None
            return message

    def wait_state(self, message_id: int, *states: str, timeout: float = 30) -> Message:
        def reached() -> Message | None:
            message = self.message(message_id)
            return message if message.state in states else None

        message = wait_for(reached, timeout=timeout, what=f"message {message_id} to reach {states}")
        assert message is not None
        return message

    def clear_closures(self) -> None:
        """The clinic's holiday calendar is not under test here; a test may run on a holiday."""
        with self.factory.begin() as session:
            session.execute(delete(Closure))


def system_settings(database_url: str, web_port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "broker_url": services.REDIS_URL,
        "redis_url": services.REDIS_URL,
        "celery_queue": f"e2e-{uuid.uuid4().hex[:12]}",
        "public_base_url": f"http://127.0.0.1:{web_port}",
        "web_port": web_port,
        "templates_dir": REPO / "templates",
        "twilio_account_sid": TEST_ACCOUNT_SID,
        "twilio_auth_token": TEST_AUTH_TOKEN,
        "max_mps": 1000.0,
        "retry_backoff_seconds": 0.2,
        "reconcile_after_seconds": 2.0,
        "claim_lease_seconds": 3.0,
        "send_lease_seconds": 5.0,
        "twilio_timeout_seconds": 2.0,
        "smtp_timeout_seconds": 2.0,
        "oncall_sms": [ONCALL_SMS],
        "oncall_email": [ONCALL_EMAIL],
        # Every library at its most talkative, so the leak check below sees the worst case.
        "log_level": "DEBUG",
        "log_format": "json",
    }
    return load_settings(**{**values, **overrides})


@contextmanager
def running_system(
    database_url: str,
    log_dir: Path,
    *,
    workers: int = 1,
    beats: int = 1,
    control_worker: bool = False,
    supervised: bool = False,
    **overrides: Any,
) -> Iterator[System]:
    """The whole system on real processes. With ``control_worker``, the production shape
    (docker-compose.yml): the workers take only send tasks and one more worker takes the
    control queue; otherwise every worker takes both. With ``supervised``, a worker that exits
    on its own is started again, as docker compose's restart policy does (``System.processes
    .restarts`` says which)."""
    problem = services.ensure_redis()
    if problem:
        if services.IN_CI:
            pytest.fail(f"{problem}, and CI=true: the suite needs it", pytrace=False)
        pytest.skip(problem)
    web_port = free_port()
    settings = system_settings(database_url, web_port, **overrides)
    engine = make_engine(database_url)
    with running_sandbox(settings) as sandbox:
        aimed = sandbox.settings
        # One directory for every process's counters, as in a deployment (docs/operations.md).
        metrics_dir = log_dir / "metrics"
        metrics_dir.mkdir(exist_ok=True)
        env = {**environment(aimed), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        with stack(env, log_dir) as processes:
            # Launched together, then waited for: side by side they are ready seconds sooner.
            waits = [processes.launch_web(web_port)]
            for n in range(workers):
                waits.append(
                    processes.launch_worker(f"worker{n + 1}", queues="sends" if control_worker else "all")
                )
            if control_worker:
                waits.append(processes.launch_worker("control", queues="control"))
            waits += [processes.launch_beat(f"beat{n + 1}") for n in range(beats)]
            for wait in waits:
                wait()
            if supervised:
                processes.supervise()
            system = System(aimed, sandbox, processes, make_session_factory(engine), make_celery(aimed))
            yield system  # a failed test's report shows the logs (tests/e2e/conftest.py)
            processes.stop_all()  # so the logs are complete, shutdown included
            assert_no_patient_data_in_logs(system.factory, log_dir)
    engine.dispose()


# Shorter message texts ("1", "STOP") and names ("Al") are words a log may hold for other reasons.
MIN_TEXT = 8
MIN_NAME = 4


def patient_data(factory: sessionmaker[Session]) -> set[str]:
    """Every phone, email, name and message text the test database holds, with the on-call
    staff's addresses: none of them may appear in any process's output."""
    found: set[str] = {ONCALL_SMS, ONCALL_EMAIL}
    texts: set[str] = set()
    with factory() as session:
        for phone, email, first, last in session.execute(
            select(Contact.phone, Contact.email, Contact.first_name, Contact.last_name)
        ):
            found.update(value for value in (phone, email) if value)
            found.update(name for name in (first, last) if name and len(name) >= MIN_NAME)
        for row in session.execute(
            select(
                Message.body, Message.body_override, Message.subject, Message.to_address, Message.to_override
            )
        ):
            texts.update(value for value in row if value)
        for body, sender in session.execute(select(InboundMessage.body, InboundMessage.from_address)):
            texts.add(body)
            found.add(sender)
    found.update(text for text in texts if len(text) >= MIN_TEXT)
    for phone in [value for value in found if value.startswith("+1") and value[1:].isdigit()]:
        found.add(phone[2:])  # the national spelling, 4155550123
    return found


def assert_no_patient_data_in_logs(factory: sessionmaker[Session], log_dir: Path) -> None:
    secrets = patient_data(factory)
    leaks: list[str] = []
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(errors="replace")
        for secret in secrets:
            at = text.find(secret)
            if at >= 0:
                line = text[text.rfind("\n", 0, at) + 1 : text.find("\n", at)]
                leaks.append(f"{path.name}: {secret!r} in {line[:300]!r}")
    assert not leaks, "patient data in process output:\n" + "\n".join(leaks)
