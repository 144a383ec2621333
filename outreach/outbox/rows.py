"""What a new outbox row is, written once: its defaults and the idempotency key formats.

Three paths write rows and all read these: ``outbox.insert_messages`` (the ORM path),
the PostgreSQL COPY writer and the SQLite writer of bulk enrollment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, cast, literal

from outreach.models import MessageKind, MessageState

INITIAL_STATE = MessageState.SCHEDULED
DEFAULT_KIND = MessageKind.AUTOMATED
INITIAL_ATTEMPTS = 0
# Sends of one row that fail transiently before it is given up (``delivery.record``).
MAX_ATTEMPTS = 5

# The key of a campaign step's message; "{}" are the enrollment id and the step key.
_ENROLLMENT_STEP = "enrollment:{}:step:{}"
# The key of an appointment's reminder or notice, versioned so a moved visit gets new rows.
_APPOINTMENT = "appointment:{}:"
_APPOINTMENT_STEP = _APPOINTMENT + "{}:{}:v{}"


def defaults(now: datetime) -> dict[str, Any]:
    """Every column a writer does not say otherwise: a scheduled automated message, unsent."""
    return {
        "state": str(INITIAL_STATE),
        "kind": str(DEFAULT_KIND),
        "context": {},
        "attempts": INITIAL_ATTEMPTS,
        "max_attempts": MAX_ATTEMPTS,
        "created_at": now,
        "updated_at": now,
    }


def enrollment_step_key(enrollment_id: int, step_key: str, earlier_rows: int = 0) -> str:
    """``enrollment:{id}:step:{key}``, and ``...:r{n}`` for a step materialised again
    (``earlier_rows`` = how many rows the step already has in this enrollment)."""
    base = _ENROLLMENT_STEP.format(enrollment_id, step_key)
    return base if earlier_rows == 0 else f"{base}:r{earlier_rows}"


def enrollment_step_key_sql(
    enrollment_id: ColumnElement[Any], step_key: ColumnElement[Any]
) -> ColumnElement[str]:
    """``enrollment_step_key(id, key)`` as an SQL expression over two columns."""
    head, middle, tail = _ENROLLMENT_STEP.split("{}")
    return literal(head) + cast(enrollment_id, String) + literal(middle) + step_key + literal(tail)


def appointment_key(appointment_id: int, kind: str, step_key: str, version: int) -> str:
    """``appointment:{id}:{kind}:{key}:v{version}``; ``kind`` is ``reminder`` or ``notice``."""
    return _APPOINTMENT_STEP.format(appointment_id, kind, step_key, version)


def appointment_key_prefix(appointment_id: int) -> str:
    """What every key of this appointment's messages starts with."""
    return _APPOINTMENT.format(appointment_id)
