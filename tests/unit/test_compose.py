"""docker-compose.yml: the production shape, validated by Docker's own tool where it exists."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from outreach.celeryapp import control_queue
from outreach.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"


def _compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin), else the standalone `docker-compose`; None when neither runs.
    `config` only reads files, so no Docker engine is needed."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose client on this machine")
    return subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
    )


def test_docker_compose_config_validates() -> None:
    done = _config({"OUTREACH_SECRET_KEY": "test-secret"})
    assert done.returncode == 0, done.stderr


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OUTREACH_SECRET_KEY"}
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose client on this machine")
    done = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode != 0 and "OUTREACH_SECRET_KEY" in done.stderr


def _services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    services: dict[str, Any] = document["services"]
    return services


def test_every_long_running_service_has_a_health_check() -> None:
    services = _services()
    assert {"postgres", "redis", "web", "worker", "control", "beat"} <= set(services)
    for name in ("postgres", "redis", "web", "worker", "control", "beat"):
        assert "test" in services[name]["healthcheck"], name


def test_web_health_check_calls_healthz_and_the_roles_run_the_documented_commands() -> None:
    services = _services()
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["web"]["command"] == ["outreach", "serve"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "worker", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "worker", "beat"]
    assert services["migrate"]["command"] == ["outreach", "db", "upgrade"]


def test_there_is_exactly_one_beat() -> None:
    services = _services()
    beats = [name for name, s in services.items() if "beat" in s.get("command", [])]
    assert beats == ["beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_application_waits_for_healthy_database_broker_and_migrations() -> None:
    for name in ("web", "worker", "beat"):
        depends = _services()[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_every_secret_and_the_rotation_fallbacks_reach_the_application() -> None:
    # Compose passes on only the names it lists: a missing one is silently the default.
    for name in ("web", "worker", "beat"):
        passed = {entry.split("=", 1)[0] for entry in _services()[name]["environment"]}
        assert {
            "OUTREACH_SECRET_KEY", "OUTREACH_SECRET_KEY_FALLBACKS", "TWILIO_AUTH_TOKEN",
            "OUTREACH_SMTP_PASSWORD", "OUTREACH_METRICS_TOKEN",
        } <= passed, name


def test_send_workers_and_the_control_worker_take_separate_queues() -> None:
    """A worker taking both queues has no process free for a crisis text while all of them
    send batches to a slow provider (tests/e2e/test_replies.py)."""
    services = _services()
    queues = {
        name: services[name]["command"][services[name]["command"].index("-Q") + 1]
        for name in ("worker", "control")
    }
    settings = load_settings(celery_queue=Settings.model_fields["celery_queue"].default)
    assert queues == {"worker": settings.celery_queue, "control": control_queue(settings)}
