"""Running the service: `outreach serve` (web) and `outreach run` (everything, for a laptop)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import httpx
import typer
from pydantic import ValidationError

from outreach import demo
from outreach.celeryapp import declare_queues
from outreach.cli.common import clock, console, handle_errors, now, session_factory, settings, transaction
from outreach.clock import child_environment
from outreach.config import (
    InsecureConfiguration,
    Settings,
    describe_invalid_settings,
    environment_with,
    load_settings,
    refuse_public_secrets,
)
from outreach.errors import OutreachError
from outreach.sandbox.control import SandboxControl, SandboxControlError

# Where `outreach run` keeps Celery beat's small state file, out of the working tree's way.
RUN_DIR = Path("var")
# How long the processes may take to answer before the demo companion gives up, and how often
# it rewrites the sandbox's banner (quiet hours end while the demo runs).
START_WITHIN = 60.0
NOTICE_REFRESH = 30.0


@handle_errors
def serve(
    host: str = typer.Option(None, help="Interface to bind (default OUTREACH_WEB_HOST)."),
    port: int = typer.Option(None, help="Port (default OUTREACH_WEB_PORT)."),
) -> None:
    """Run the web process(es): the staff web app, Twilio webhooks, unsubscribe pages, the API,
    /healthz and /metrics (OUTREACH_WEB_WORKERS processes on one port)."""
    import os

    import uvicorn

    from outreach.ops import logs
    from outreach.web import processes
    from outreach.web.app import create_app

    config = _settings_or_exit()
    _refuse_if_insecure(config)
    logs.configure(config)
    count = processes.process_count(config)
    made = processes.prepare_environment(os.environ, clock()) if count > 1 else None
    try:
        uvicorn.run(
            create_app(config) if count == 1 else "outreach.web.processes:app_from_environment",
            factory=count > 1,
            workers=count,
            host=host or config.web_host,
            port=port or config.web_port,
            log_config=None,  # keep ours: JSON or text, with patient data redacted
            access_log=False,  # access logs would carry unsubscribe tokens and phone-page paths
        )
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


# The workers `outreach run` starts, by name, with the queues each takes (OUTREACH_WORKER_QUEUES).
_WORKER_QUEUES = {"worker": "sends", "control": "control"}


def _worker_command(python: str, name: str) -> list[str]:
    return [
        python, "-m", "celery", "-A", "worker", "worker", "--loglevel", "warning",
        "--concurrency", "2", "--hostname", f"{name}@%h",
    ]


@handle_errors
def run() -> None:
    """Run web, worker, beat and the sandbox together until Ctrl-C (embedded defaults)."""
    from outreach.ops import logs

    config = _settings_or_exit()
    wiring = _sandbox_wiring(config)
    # Checked here as each child checks itself, so a refusal is one line, not four.
    _refuse_if_insecure(load_settings(**{field: value for field, (_, value) in wiring.items()}))
    logs.configure(config, "WARNING")
    RUN_DIR.mkdir(exist_ok=True)
    python = sys.executable
    commands = {
        "sandbox": [python, "-m", "outreach.cli.app", "sandbox"],
        "web": [python, "-m", "outreach.cli.app", "serve"],
        # Sends and control apart, as in production (docker-compose.yml): a crisis text never
        # waits for a send process to come free.
        **{name: _worker_command(python, name) for name in _WORKER_QUEUES},
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "worker",
            "beat",
            "--loglevel",
            "warning",
            "--schedule",
            str(RUN_DIR / "celerybeat-schedule"),
        ],
    }
    wired = environment_with({variable: value for variable, value in wiring.values()})
    env = child_environment(wired, clock())
    with transaction() as session:
        held = demo.held_note(session, config, now())
    declare_queues(config)  # before the workers and beat race to create them
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name, command in commands.items():
        queues = _WORKER_QUEUES.get(name)
        child_env = {**env, "OUTREACH_WORKER_QUEUES": queues} if queues else env
        processes[name] = subprocess.Popen(command, env=child_env)  # noqa: S603 (our own interpreter and modules)
    console.print(
        f"Clinic Outreach is running.\n"
        f"  staff web app   {config.public_base_url}/  (sign in with a staff login)\n"
        f"  SMS and email   {'the sandbox (nothing leaves this machine)' if wiring else 'as configured'}\n"
        f"  fake phones     http://127.0.0.1:{config.sandbox_http_port}/\n"
        f"  mail inbox      http://127.0.0.1:{config.sandbox_http_port}/mail\n"
        f"  CLI             outreach --help  (e.g. outreach messages list)\n"
        f"{held}\n"
        f"Press Ctrl-C to stop."
    )
    stopping = False

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    threading.Thread(
        target=_demo_companion, args=(config, bool(wiring), lambda: stopping), daemon=True
    ).start()
    try:
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    console.print(f"[red]{name} exited with status {process.returncode}; stopping[/red]")
                    stopping = True
            time.sleep(0.5)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


demo_app = typer.Typer(no_args_is_help=True, help="Demo data for trying the service out.")


@demo_app.command("seed")
@handle_errors
def demo_seed() -> None:
    """Add fictional patients, enroll them in the education campaign, book a visit (idempotent)."""
    from outreach import demo

    with transaction() as session:
        report = demo.seed(session, settings(), now())
    console.print(
        f"demo data ready: contacts {report.contacts}, enrolled {report.enrolled or 'already'}, "
        f"appointment {report.appointment_id}"
    )


def _settings_or_exit() -> Settings:
    """The settings, or one line naming what is wrong (as worker.py prints it) and exit 2."""
    try:
        return settings()
    except ValidationError as invalid:
        sys.stderr.write(f"error: {describe_invalid_settings(invalid)}\n")
        raise typer.Exit(2) from None


def _refuse_if_insecure(config: Settings) -> None:
    try:
        refuse_public_secrets(config)
    except InsecureConfiguration as exc:
        # One unwrapped line (a terminal's width must not split it), as worker.py prints it.
        sys.stderr.write(f"error: refusing to start: {exc}\n")
        raise typer.Exit(exc.exit_code) from None


def _demo_companion(config: Settings, sandboxed: bool, stopped: Callable[[], bool]) -> None:
    """Keep the sandbox's banner true, and play the demo conversation once on the fake phones.

    Runs beside the processes `outreach run` started; it only talks to them the way a person
    would (the sandbox's control API, the staff inbox service), so it bends no sending rule.
    """
    if not sandboxed:
        return
    control = SandboxControl(f"http://127.0.0.1:{config.sandbox_http_port}", timeout=10.0)
    web = f"http://127.0.0.1:{config.web_port}/healthz"
    try:
        # One client for the polls: each new one builds a TLS context, ~20 ms of CPU taken from
        # the processes starting beside it.
        with httpx.Client(timeout=2.0) as client:
            if not _wait_until(lambda: control.health() and _healthy(client, web), stopped):
                return
        _refresh_notice(control, config)
        with transaction() as session:
            seeded = demo.is_seeded(session)
        if seeded:
            demo.converse(session_factory(), config, control.reply, clock(), time.sleep)
        while not stopped():
            _refresh_notice(control, config)
            time.sleep(NOTICE_REFRESH)
    except (SandboxControlError, httpx.HTTPError, OutreachError) as exc:
        console.print(f"[yellow]demo companion stopped: {type(exc).__name__}[/yellow]")
    finally:
        control.close()


def _refresh_notice(control: SandboxControl, config: Settings) -> None:
    with transaction() as session:
        control.configure(notice=demo.held_note(session, config, now()))


def _healthy(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_until(condition: Callable[[], bool], stopped: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline and not stopped():
        try:
            if condition():
                return True
        except (SandboxControlError, httpx.HTTPError):
            pass
        time.sleep(0.5)
    return False


def _sandbox_wiring(config: Settings) -> dict[str, tuple[str, str]]:
    """Point the processes we start at the sandbox, unless Twilio or SMTP were configured.
    Settings field -> (environment variable, value)."""
    wiring: dict[str, tuple[str, str]] = {}
    if "twilio_api_base_url" not in config.model_fields_set:
        url = f"http://127.0.0.1:{config.sandbox_http_port}"
        wiring["twilio_api_base_url"] = ("OUTREACH_TWILIO_API_BASE_URL", url)
    if "smtp_host" not in config.model_fields_set and "smtp_port" not in config.model_fields_set:
        wiring["smtp_host"] = ("OUTREACH_SMTP_HOST", "127.0.0.1")
        wiring["smtp_port"] = ("OUTREACH_SMTP_PORT", str(config.sandbox_smtp_port))
    return wiring


def register(root: typer.Typer) -> None:
    root.command()(serve)
    root.command()(run)
    root.add_typer(demo_app, name="demo")
