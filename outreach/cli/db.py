"""`outreach db upgrade`."""

from __future__ import annotations

import typer

from outreach.cli.common import console, handle_errors, settings
from outreach.migrate import upgrade as run_upgrade

app = typer.Typer(no_args_is_help=True, help="Database schema.")


@app.command()
@handle_errors
def upgrade() -> None:
    """Create or update the schema to the newest version (safe to run again)."""
    run_upgrade(settings().database_url)
    console.print("database is up to date")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="db")
