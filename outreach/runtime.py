"""Per-process services for the worker: built from settings at the entry point, rebuilt after
a fork (pooled database connections must never be shared between processes)."""

from __future__ import annotations

from outreach import clock
from outreach.channels.smtp.client import SmtpEmail
from outreach.channels.twilio.client import TwilioSms
from outreach.config import Settings, refuse_public_secrets
from outreach.db import make_engine, make_session_factory
from outreach.delivery.ratelimit import limiter_from_settings
from outreach.delivery.send import Services

_current: Services | None = None


def build(settings: Settings) -> Services:
    refuse_public_secrets(settings)
    factory = make_session_factory(make_engine(settings.database_url))
    return Services(
        settings=settings,
        session_factory=factory,
        providers={
            "sms": TwilioSms.from_settings(settings),
            "email": SmtpEmail.from_settings(settings),
        },
        limiter=limiter_from_settings(settings, factory),
        clock=clock.from_settings(settings),
    )


def install(settings: Settings) -> Services:
    global _current
    _current = build(settings)
    return _current


def current() -> Services:
    if _current is None:
        raise RuntimeError("outreach.runtime.install(settings) was not called by the entry point")
    return _current
