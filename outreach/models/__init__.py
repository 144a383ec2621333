"""All tables, imported together so metadata (and Alembic) sees every one."""

from outreach.models.accounts import LoginFailure, Role, User, WebSession
from outreach.models.appointments import Appointment, AppointmentStatus
from outreach.models.audit import AuditEvent
from outreach.models.base import Base, UTCDateTime, utcnow
from outreach.models.campaigns import Campaign, CampaignStep, Closure, Enrollment, EnrollmentState
from outreach.models.contacts import (
    Category,
    Channel,
    Consent,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    Contact,
    ContactTag,
    Suppression,
)
from outreach.models.inbound import InboundClass, InboundMessage, InboxItem, InboxState
from outreach.models.messages import (
    CAP_COUNTED_STATES,
    PENDING_STATES,
    TERMINAL_STATES,
    Message,
    MessageAttempt,
    MessageEvent,
    MessageKind,
    MessageState,
    PendingStatusEvent,
    RateBooking,
    RateSlot,
)
from outreach.models.rollup import DeliveryDay, DeliveryDayCount
from outreach.models.tokens import ApiToken

__all__ = [
    "CAP_COUNTED_STATES",
    "PENDING_STATES",
    "TERMINAL_STATES",
    "ApiToken",
    "Appointment",
    "AppointmentStatus",
    "AuditEvent",
    "Base",
    "Campaign",
    "CampaignStep",
    "Category",
    "Channel",
    "Closure",
    "Consent",
    "ConsentEvent",
    "ConsentSource",
    "ConsentState",
    "Contact",
    "ContactTag",
    "DeliveryDay",
    "DeliveryDayCount",
    "Enrollment",
    "EnrollmentState",
    "InboundClass",
    "InboundMessage",
    "InboxItem",
    "InboxState",
    "LoginFailure",
    "Message",
    "MessageAttempt",
    "MessageEvent",
    "MessageKind",
    "MessageState",
    "PendingStatusEvent",
    "RateBooking",
    "RateSlot",
    "Role",
    "Suppression",
    "UTCDateTime",
    "User",
    "WebSession",
    "utcnow",
]
