"""Real entry points refuse public secrets with one line, and start on the sandbox's defaults.

Each process is started the way an operator starts it, with only environment variables for
configuration; none of them gets far enough to reach a network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO, free_port, wait_healthy

# What the attacker in the report found accepted: a real-looking account, no token, no key.
PRODUCTION_WITHOUT_SECRETS = {
    "TWILIO_ACCOUNT_SID": "AC" + "3c" * 16,
    "OUTREACH_TWILIO_MESSAGING_SERVICE_SID": "MG" + "4d" * 16,
    "OUTREACH_PUBLIC_BASE_URL": "https://outreach.clinic.example.org",
}


def _environment(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    # Nothing of this machine's own OUTREACH_* or TWILIO_* configuration leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTREACH_", "TWILIO_"))}
    env["OUTREACH_DATABASE_URL"] = f"sqlite:///{tmp_path / 'outreach.sqlite'}"
    env["OUTREACH_BROKER_URL"] = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    return {**env, **extra}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "outreach.cli.app", "serve"],
        ["-m", "outreach.cli.app", "run"],
        ["-m", "celery", "-A", "worker", "worker", "--loglevel", "warning"],
        ["-m", "celery", "-A", "worker", "beat", "--loglevel", "warning"],
    ],
    ids=["serve", "run", "worker", "beat"],
)
def test_every_process_refuses_real_twilio_without_secrets_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    # Named explicitly: `outreach run` aims its processes at the sandbox unless told otherwise.
    env = {**PRODUCTION_WITHOUT_SECRETS, "OUTREACH_TWILIO_API_BASE_URL": "https://api.twilio.com"}
    result = _run(command, _environment(tmp_path, env))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "TWILIO_AUTH_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_the_public_default_secret_key_is_refused_with_a_real_token(tmp_path: Path) -> None:
    env = {**PRODUCTION_WITHOUT_SECRETS, "TWILIO_AUTH_TOKEN": "9f" * 16}
    result = _run(["-m", "outreach.cli.app", "serve"], _environment(tmp_path, env))
    assert result.returncode != 0
    assert "OUTREACH_SECRET_KEY" in result.stderr and "Traceback" not in result.stderr


def test_the_worker_entry_point_loads_on_sandbox_defaults(tmp_path: Path) -> None:
    sandbox = {"OUTREACH_TWILIO_API_BASE_URL": "http://127.0.0.1:8025"}
    result = _run(["-c", "import worker"], _environment(tmp_path, sandbox))
    assert result.returncode == 0, result.stderr


def test_serve_starts_and_answers_on_sandbox_defaults(tmp_path: Path) -> None:
    port = free_port()
    env = _environment(tmp_path, {"OUTREACH_TWILIO_API_BASE_URL": "http://127.0.0.1:8025"})
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "outreach.cli.app", "serve", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(port, process, tmp_path / "serve.log")  # fails with the log if serve exits
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


@pytest.mark.parametrize(
    "command",
    [["-m", "outreach.cli.app", "serve"], ["-m", "celery", "-A", "worker", "worker"]],
    ids=["serve", "worker"],
)
def test_an_invalid_setting_is_one_line_naming_the_variable_not_its_value(
    command: list[str], tmp_path: Path
) -> None:
    env = {"OUTREACH_SMTP_PORT": "not-a-port-4711", "OUTREACH_TWILIO_API_BASE_URL": "http://127.0.0.1:8025"}
    result = _run(command, _environment(tmp_path, env))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: invalid configuration: OUTREACH_SMTP_PORT:")
    assert "4711" not in result.stderr and "Traceback" not in result.stderr
