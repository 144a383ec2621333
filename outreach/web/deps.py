"""What routers get from the app: its settings and session factory, set by the app factory
on ``app.state`` (``create_app`` does; tests build a small app and set the same two)."""

from __future__ import annotations

from typing import cast

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_session_factory(request: Request) -> sessionmaker[Session]:
    return cast("sessionmaker[Session]", request.app.state.session_factory)
