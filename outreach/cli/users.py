"""`outreach users ...` (staff logins for the web app) and `outreach audit export`."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from outreach import audit
from outreach.accounts import users
from outreach.cli import common
from outreach.cli.common import console, handle_errors, transaction, when
from outreach.errors import OutreachError

app = typer.Typer(no_args_is_help=True, help="Staff logins for the web app.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit trail: who viewed or changed what.")


def _actor() -> audit.Actor:
    return audit.Actor(audit.ActorKind.CLI, getpass.getuser())


def read_new_password() -> str:
    """Twice, from a hidden prompt on a terminal, or two lines of stdin when piped."""
    if sys.stdin.isatty():
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    first, second = sys.stdin.readline().rstrip("\n"), sys.stdin.readline().rstrip("\n")
    if first != second:
        raise OutreachError("the two passwords on stdin differ")
    return first


@app.command("add")
@handle_errors
def add(
    email: Annotated[str, typer.Argument(help="The login: the person's email address.")],
    role: Annotated[str, typer.Option("--role", help="admin or staff.")] = "staff",
) -> None:
    """Add a login; the password is read twice (prompt, or two lines on stdin)."""
    users.check_role(role)
    password = read_new_password()
    now = common.now()
    with transaction() as session:
        user = users.add_user(session, email, role, password, now)
        audit.record(
            session, _actor(), "user.add", now, subject_type="user", subject_id=user.id, detail={"role": role}
        )
    console.print(f"added {user.email} ({user.role})", highlight=False)


@app.command("list")
@handle_errors
def list_() -> None:
    """Every login with its role and whether it may sign in."""
    with transaction() as session:
        rows = users.list_users(session)
        table = Table("email", "role", "status", "added")
        for user in rows:
            table.add_row(
                user.email,
                user.role,
                "disabled" if user.disabled else "active",
                when(user.created_at),
            )
    console.print(table)


@app.command("disable")
@handle_errors
def disable(email: Annotated[str, typer.Argument(help="The login to disable.")]) -> None:
    """Stop a login from signing in and end its open sessions."""
    now = common.now()
    with transaction() as session:
        user = users.disable_user(session, email, now)
        audit.record(session, _actor(), "user.disable", now, subject_type="user", subject_id=user.id)
    console.print(f"disabled {user.email}; its sessions have ended", highlight=False)


@app.command("reset-password")
@handle_errors
def reset_password(email: Annotated[str, typer.Argument(help="The login whose password to set.")]) -> None:
    """Set a new password (read twice) and end the login's open sessions."""
    password = read_new_password()
    now = common.now()
    with transaction() as session:
        user = users.set_password(session, email, password, now)
        audit.record(session, _actor(), "user.reset_password", now, subject_type="user", subject_id=user.id)
    console.print(f"new password set for {user.email}; its sessions have ended", highlight=False)


@app.command("ensure-admin")
@handle_errors
def ensure_admin() -> None:
    """Create a first admin login with a random password if no admin can sign in (make run)."""
    now = common.now()
    with transaction() as session:
        made = users.ensure_admin(session, now)
        if made is not None:
            audit.record(session, _actor(), "user.add", now, detail={"role": "admin", "first_admin": True})
    if made is None:
        return
    email, password = made
    console.print(
        f"Staff web app: sign in as {email} with password {password}\n"
        "  (shown only this once; change it with: outreach users reset-password " + email + ")",
        highlight=False,
    )


@audit_app.command("export")
@handle_errors
def export(file: Annotated[Path, typer.Argument(help="CSV file to write.")]) -> None:
    """Write the whole audit trail, oldest first, as CSV (UTC ISO-8601 times)."""
    if not file.parent.is_dir():
        raise OutreachError(f"{file.parent} is not a directory")
    now = common.now()
    with transaction() as session, file.open("w", newline="", encoding="utf-8") as out:
        count = audit.export_csv(session, audit.AuditFilter(), out)
        audit.record(session, _actor(), "audit.export", now, detail={"rows": count})
    console.print(f"wrote {count} audit events to {file}", highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="users")
    root.add_typer(audit_app, name="audit")
