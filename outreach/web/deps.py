"""What routers get from the app: its settings and session factory, set by the app factory
on ``app.state`` (``create_app`` does; tests build a small app and set the same two)."""

from __future__ import annotations

from typing import cast

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from outreach.clock import Clock
from outreach.config import Settings
from outreach.models import utcnow


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_clock(request: Request) -> Clock:
    """The process clock (``outreach.clock``); the wall clock for apps that set none."""
    return cast(Clock, getattr(request.app.state, "clock", utcnow))


def get_session_factory(request: Request) -> sessionmaker[Session]:
    return cast("sessionmaker[Session]", request.app.state.session_factory)
