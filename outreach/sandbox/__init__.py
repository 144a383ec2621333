"""The sandbox: a local Twilio-compatible Messages API with status callbacks, fake phones and an
SMTP sink with an inbox page. For development, demos, staff training and tests; fake data only.

``outreach sandbox`` runs it (see ``server.SandboxServer``); tests drive it through
``control.SandboxControl``.
"""
