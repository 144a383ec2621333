"""Providers behind one small protocol: ``send(outgoing) -> SendResult`` or ``DeliveryError``."""

from outreach.channels.base import Attachment, DeliveryError, Effect, Outgoing, Provider, SendResult

__all__ = ["Attachment", "DeliveryError", "Effect", "Outgoing", "Provider", "SendResult"]
