"""`outreach tokens add|list|revoke`: bearer tokens for the JSON API (service: outreach.web.api.tokens)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from outreach.cli import common
from outreach.cli.common import JsonOption, console, handle_errors, print_json, transaction, when
from outreach.web.api import tokens

app = typer.Typer(no_args_is_help=True, help="Bearer tokens for the JSON API (/api/v1).")


@app.command("add")
@handle_errors
def add(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. ehr-sync.")],
    role: Annotated[str, typer.Option("--role", help="staff, or admin for admin-only routes.")] = "staff",
) -> None:
    """Issue a token. It is shown once, on the last line: store it in the integration now."""
    with transaction() as session:
        issued = tokens.issue(session, name, role, common.now())
    console.print(f"Token {issued.name!r} ({issued.role}) created. It is shown only once:", highlight=False)
    # The secret alone on the last line, unstyled, so scripts can take it with `tail -n1`.
    typer.echo(issued.secret)


@app.command("list")
@handle_errors
def list_(
    as_json: JsonOption = False,
) -> None:
    """Tokens with their role, when they were created and last used (never the secrets)."""
    with transaction() as session:
        rows = tokens.all_tokens(session)
    if as_json:
        print_json(
            [
                {
                    "name": t.name,
                    "role": t.role,
                    "created_at": t.created_at.isoformat(),
                    "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                    "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                }
                for t in rows
            ]
        )
        return
    if not rows:
        console.print("No API tokens.")
        return

    def local(at: datetime | None) -> str:
        return when(at) if at is not None else "never"

    table = Table("name", "role", "created", "last used", "revoked")
    for t in rows:
        table.add_row(
            t.name,
            t.role,
            local(t.created_at),
            local(t.last_used_at),
            local(t.revoked_at) if t.revoked_at else "",
        )
    console.print(table)


@app.command("revoke")
@handle_errors
def revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token: requests carrying it get 401 from now on."""
    with transaction() as session:
        tokens.revoke(session, name, common.now())
    console.print(f"Token {name!r} revoked.", highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="tokens")
