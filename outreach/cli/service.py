"""Running the service: `outreach serve` (web) and `outreach run` (everything, for a laptop)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import typer

from outreach.cli.common import console, handle_errors, settings, transaction
from outreach.config import Settings, environment_with

# Where `outreach run` keeps Celery beat's small state file, out of the working tree's way.
RUN_DIR = Path("var")


@handle_errors
def serve(
    host: str = typer.Option(None, help="Interface to bind (default OUTREACH_WEB_HOST)."),
    port: int = typer.Option(None, help="Port (default OUTREACH_WEB_PORT)."),
) -> None:
    """Run the web process: the staff web app, Twilio webhooks, unsubscribe pages, /healthz."""
    import uvicorn

    from outreach.web.app import create_app

    config = settings()
    uvicorn.run(
        create_app(config),
        host=host or config.web_host,
        port=port or config.web_port,
        log_level="warning",
        access_log=False,  # access logs would carry unsubscribe tokens and phone-page paths
    )


@handle_errors
def run() -> None:
    """Run web, worker, beat and the sandbox together until Ctrl-C (embedded defaults)."""
    config = settings()
    RUN_DIR.mkdir(exist_ok=True)
    python = sys.executable
    commands = {
        "sandbox": [python, "-m", "outreach.cli.app", "sandbox"],
        "web": [python, "-m", "outreach.cli.app", "serve"],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "--loglevel",
            "warning",
            "--concurrency",
            "2",
        ],
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
    wiring = _sandbox_wiring(config)
    env = environment_with(wiring)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name, command in commands.items():
        processes[name] = subprocess.Popen(command, env=env)  # noqa: S603 (our own interpreter and modules)
    console.print(
        f"Clinic Outreach is running.\n"
        f"  staff web app   {config.public_base_url}/  (sign in with a staff login)\n"
        f"  SMS and email   {'the sandbox (nothing leaves this machine)' if wiring else 'as configured'}\n"
        f"  fake phones     http://127.0.0.1:{config.sandbox_http_port}/\n"
        f"  mail inbox      http://127.0.0.1:{config.sandbox_http_port}/mail\n"
        f"  CLI             outreach --help  (e.g. outreach messages list)\n"
        f"Press Ctrl-C to stop."
    )
    stopping = False

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
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
    from outreach.models import utcnow

    with transaction() as session:
        report = demo.seed(session, settings(), utcnow())
    console.print(
        f"demo data ready: contacts {report.contacts}, enrolled {report.enrolled or 'already'}, "
        f"appointment {report.appointment_id}"
    )


def _sandbox_wiring(config: Settings) -> dict[str, str]:
    """Point the processes we start at the sandbox, unless Twilio or SMTP were configured."""
    wiring: dict[str, str] = {}
    if "twilio_api_base_url" not in config.model_fields_set:
        wiring["OUTREACH_TWILIO_API_BASE_URL"] = f"http://127.0.0.1:{config.sandbox_http_port}"
    if "smtp_host" not in config.model_fields_set and "smtp_port" not in config.model_fields_set:
        wiring["OUTREACH_SMTP_HOST"] = "127.0.0.1"
        wiring["OUTREACH_SMTP_PORT"] = str(config.sandbox_smtp_port)
    return wiring


def register(root: typer.Typer) -> None:
    root.command()(serve)
    root.command()(run)
    root.add_typer(demo_app, name="demo")
