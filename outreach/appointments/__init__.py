"""Appointments and their reminder sequences: service functions for the CLI, a JSON API and
booking-system integrations. See docs/appointments.md."""

from outreach.appointments.dayview import day_view
from outreach.appointments.importer import ImportReport, import_appointments_csv
from outreach.appointments.policy import PolicyError, ReminderPolicy, load_policies, policy_for
from outreach.appointments.replies import appointment_reply
from outreach.appointments.service import (
    AppointmentError,
    Change,
    book,
    book_series,
    cancel,
    complete,
    confirm,
    describe,
    get,
    no_show,
    request_reschedule,
    reschedule,
)
from outreach.appointments.upsert import AppointmentData, upsert

__all__ = [
    "AppointmentData",
    "AppointmentError",
    "Change",
    "ImportReport",
    "PolicyError",
    "ReminderPolicy",
    "appointment_reply",
    "book",
    "book_series",
    "cancel",
    "complete",
    "confirm",
    "day_view",
    "describe",
    "get",
    "import_appointments_csv",
    "load_policies",
    "no_show",
    "policy_for",
    "request_reschedule",
    "reschedule",
    "upsert",
]
