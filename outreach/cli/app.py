"""The `outreach` command: one Typer app; each area registers its own commands."""

from __future__ import annotations

import typer

from outreach.cli import (
    appointments,
    campaigns,
    contacts,
    db,
    inbox,
    messages,
    sandbox,
    service,
    tokens,
    users,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Clinic Outreach")

for area in (db, contacts, campaigns, messages, appointments, inbox, sandbox, service, tokens, users):
    area.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
