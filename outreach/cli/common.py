"""What every CLI command shares: settings read once, a session factory, error handling."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, wraps
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings, load_settings
from outreach.db import make_engine, make_session_factory
from outreach.errors import OutreachError

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)


@cache
def settings() -> Settings:
    return load_settings()


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


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str, ensure_ascii=False) + "\n")
