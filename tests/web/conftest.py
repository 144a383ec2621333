"""The staff web app's fixtures (app, client, clock) for the web tests; modules may override them."""

from tests.support.staffweb import app, client, clock

__all__ = ["app", "client", "clock"]
