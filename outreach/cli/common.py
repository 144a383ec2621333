"""What every CLI command shares: settings read once, a session factory, error handling."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache, wraps
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach import timefmt
from outreach.clock import Clock
from outreach.clock import from_settings as clock_from_settings
from outreach.config import Settings, load_settings
from outreach.db import make_engine, make_session_factory
from outreach.errors import OutreachError
from outreach.models import Contact
from outreach.replies.pause import Pause

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@cache
def settings() -> Settings:
    return load_settings()


@cache
def clock() -> Clock:
    """This process's clock (OUTREACH_CLOCK can fix it), built once like the settings."""
    return clock_from_settings(settings())


def now() -> datetime:
    return clock()()


@cache
def session_factory() -> sessionmaker[Session]:
    return make_session_factory(make_engine(settings().database_url))


@contextmanager
def transaction() -> Iterator[Session]:
    with session_factory()() as session, session.begin():
        yield session


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn user mistakes into a one-line message on stderr and a non-zero exit."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OutreachError as exc:
            raise fail(str(exc), exc.exit_code) from None

    return wrapper


def when(at: datetime | None, patient_zone: str | None = None) -> str:
    """An instant for staff: the clinic's wall clock (and the patient's where it differs)."""
    return timefmt.staff_time(at, settings().clinic_zone, patient_zone)


def when_iso(value: str | None, patient_zone: str | None = None) -> str:
    """``when`` for the ISO-8601 strings the read-only views return."""
    return when(datetime.fromisoformat(value), patient_zone) if value else ""


def contact_zones(session: Session, contact_ids: Iterable[int]) -> dict[int, str]:
    """Each contact's time zone, to show their local time beside the clinic's."""
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    rows = session.execute(select(Contact.id, Contact.timezone).where(Contact.id.in_(ids)))
    return {contact_id: zone for contact_id, zone in rows}


def pause_lines(pause: Pause) -> list[str]:
    """What staff read about a crisis pause, wherever the patient appears."""
    cause = (
        f"by the reply in inbox item {pause.inbox_item_id}" if pause.inbox_item_id is not None
        else "by a crisis reply (its inbox item is being raised)"
    )
    return [
        f"Automated messages paused since {when(pause.since)}, {cause}.",
        f"Clear the pause with: {pause.clear_command}",
    ]


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=_json_value, ensure_ascii=False) + "\n")


def _json_value(value: object) -> str:
    # ISO-8601 with its offset ("T" between date and time), as integrations expect.
    return value.isoformat() if isinstance(value, datetime) else str(value)
