"""The `outreach` command: one Typer app with a sub-app per area."""

from __future__ import annotations

import typer

from outreach.cli import db

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Clinic Outreach")
app.add_typer(db.app, name="db")


def main() -> None:
    app()
