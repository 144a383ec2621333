"""The sandbox's parts wired together: state, status progression, inbound sender, one ASGI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from outreach import clock
from outreach.config import Settings
from outreach.sandbox.callbacks import StatusProgression
from outreach.sandbox.control_api import ControlApi
from outreach.sandbox.inbound import InboundSender
from outreach.sandbox.pages import Pages
from outreach.sandbox.state import RuntimeConfig, SandboxState
from outreach.sandbox.twilio_api import MessagesApi


def keyword_auto_reply(settings: Settings) -> bool:
    """Whether the sandbox answers STOP/START/HELP itself, as Twilio's default handling does.

    It follows OUTREACH_TWILIO_HANDLES_OPT_OUT unless OUTREACH_SANDBOX_OPT_OUT_AUTO_REPLY is set:
    the app stays silent on these keywords exactly when Twilio answers them, so the fake phone
    shows one answer per keyword either way, as a real phone would.
    """
    if "sandbox_opt_out_auto_reply" in settings.model_fields_set:
        return settings.sandbox_opt_out_auto_reply
    return settings.twilio_handles_opt_out


class Sandbox:
    """Everything but the listening sockets; ``start`` and ``close`` manage the callback threads."""

    def __init__(self, settings: Settings) -> None:
        token = settings.twilio_auth_token.get_secret_value()
        self.settings = settings
        self.state = SandboxState(
            settings.twilio_account_sid,
            RuntimeConfig(
                callback_delay=settings.sandbox_callback_delay,
                status_callbacks=settings.sandbox_status_callbacks,
                auto_reply=keyword_auto_reply(settings),
            ),
            clock=clock.from_settings(settings),
        )
        self.progression = StatusProgression(self.state, token, workers=settings.sandbox_callback_workers)
        self.inbound = InboundSender(
            self.state,
            public_base_url=settings.public_base_url,
            clinic_number=settings.twilio_from,
            auth_token=token,
        )
        api = MessagesApi(
            self.state,
            self.progression,
            account_sid=settings.twilio_account_sid,
            auth_token=token,
            default_from=settings.twilio_from,
        )
        control = ControlApi(self.state, self.progression, self.inbound)
        smtp_address = f"{settings.sandbox_host}:{settings.sandbox_smtp_port}"
        pages = Pages(self.state, self.inbound, smtp_address, settings.clinic_zone)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.asgi = Starlette(
            routes=[*api.routes(), *control.routes(), *pages.routes()], lifespan=self._lifespan
        )

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.loop = asyncio.get_running_loop()
        yield
        self.state.release_hangs()

    def release_hangs_threadsafe(self) -> None:
        """Let held requests answer, so a shutdown does not wait for their deadline."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.state.release_hangs)

    def start(self) -> None:
        self.progression.start()

    def close(self) -> None:
        self.progression.stop()
        self.inbound.close()
