"""``outreach sandbox``: the local Twilio-compatible API and SMTP sink, in one process."""

from __future__ import annotations

import errno

import typer

from outreach.cli.common import console, handle_errors, settings
from outreach.errors import OutreachError


def register(root: typer.Typer) -> None:
    """Add this area's commands to the root app."""

    @root.command("sandbox")
    @handle_errors
    def sandbox(
        host: str = typer.Option(None, help="Interface to listen on [default: OUTREACH_SANDBOX_HOST]"),
        http_port: int = typer.Option(None, help="HTTP port [default: OUTREACH_SANDBOX_HTTP_PORT]"),
        smtp_port: int = typer.Option(None, help="SMTP port [default: OUTREACH_SANDBOX_SMTP_PORT]"),
        no_callbacks: bool = typer.Option(
            False, "--no-callbacks", help="Send no status callbacks (throughput benchmarks)"
        ),
    ) -> None:
        """Run the sandbox: fake Twilio Messages API, fake phones, SMTP sink and inbox."""
        from outreach.sandbox.server import SandboxServer

        config = settings()
        if no_callbacks:
            config = config.model_copy(update={"sandbox_status_callbacks": False})
        try:
            server = SandboxServer(config, host=host, http_port=http_port, smtp_port=smtp_port)
        except OSError as exc:
            raise OutreachError(_bind_problem(exc)) from None
        url = server.http_url
        console.print("[bold]Clinic Outreach sandbox[/bold] (test data only)")
        console.print(f"  Twilio API   {url}   (set OUTREACH_TWILIO_API_BASE_URL={url})")
        console.print(f"  Phones       {url}/")
        console.print(f"  Mail inbox   {url}/mail")
        console.print(f"  SMTP         {server.host}:{server.smtp_port}")
        console.print(f"  Control API  {url}/_sandbox/...")
        console.print(f"  Replies go to {config.public_base_url.rstrip('/')}/webhooks/twilio/sms")
        try:
            server.serve_forever()
        except OSError as exc:
            raise OutreachError(_bind_problem(exc)) from None


def _bind_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "a sandbox port is already in use (another sandbox?); choose --http-port / --smtp-port"
    return f"the sandbox could not start: {exc.strerror or exc}"
