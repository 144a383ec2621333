"""PostgreSQL: new enrollments and their messages written with binary COPY."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from outreach.campaigns.eligibility import ENROLLMENTS
from outreach.campaigns.planning import NewEnrollments
from outreach.models import EnrollmentState
from outreach.outbox import rows
from outreach.outbox.idsets import allocate_ids

# PostgreSQL binary COPY: rows are assembled from pre-encoded fields, since most of a
# message row is the same for every contact on one plan. Binary spares the server from
# parsing three timestamps per row, which text COPY spends more time on than the insert.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"
_INT4 = struct.Struct("!i")
_INT4_FIELD = struct.Struct("!ii")
_INT8_FIELD = struct.Struct("!iq")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Contacts per write: the server inserts one chunk while the next is being built.
_COPY_CHUNK = 5000


def _field_text(value: str) -> bytes:
    data = value.encode()
    return _INT4.pack(len(data)) + data


def _field_int(value: int) -> bytes:
    return _INT4_FIELD.pack(4, value)


def _field_time(value: datetime) -> bytes:
    return _INT8_FIELD.pack(8, (value - _PG_EPOCH) // _MICROSECOND)


_ENROLLMENT_COLUMNS = (
    "id, contact_id, campaign_id, state, started_at, created_at, updated_at, stopped_channels"
)
_MESSAGE_COLUMNS = (
    "idempotency_key, contact_id, channel, category, kind, template, context, enrollment_id, "
    "step_key, due_at, state, attempts, max_attempts, created_at, updated_at"
)


def copy_fresh(session: Session, new: NewEnrollments) -> None:
    """PostgreSQL: enrollment ids taken from their sequence, then both tables written with
    binary COPY (PostgreSQL's multi-row insert path)."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    campaign, members = new.campaign, new.members
    stamp = _field_time(new.created_at)
    enrollment_ids = allocate_ids(session, ENROLLMENTS, len(members))
    with driver.cursor() as cursor:
        enrollment_tail = (
            _field_int(campaign.id)
            + _field_text(str(EnrollmentState.ACTIVE))
            + _field_time(new.started_at)
            + stamp
            + stamp
            + _field_text("[]")
        )
        with cursor.copy(f"COPY enrollments ({_ENROLLMENT_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_COPY_HEADER)
            fields = struct.pack("!h", 8)
            for start in range(0, len(members), _COPY_CHUNK):
                copy.write(
                    b"".join(
                        fields + _field_int(eid) + _field_int(cid) + enrollment_tail
                        for eid, (cid, _plan) in zip(
                            enrollment_ids[start : start + _COPY_CHUNK],
                            members[start : start + _COPY_CHUNK],
                            strict=True,
                        )
                    )
                )
            copy.write(_COPY_TRAILER)
        # Per plan step: the fields between the contact id and the enrollment id, and after it.
        encoded = [
            [
                (
                    step.key,
                    _field_text(step.channel)
                    + _field_text(campaign.category)
                    + _field_text(str(rows.DEFAULT_KIND))
                    + _field_text(step.template)
                    + _field_text("{}"),
                    _field_text(step.key)
                    + _field_time(due_at)
                    + _field_text(str(rows.INITIAL_STATE))
                    + _field_int(rows.INITIAL_ATTEMPTS)
                    + _field_int(rows.MAX_ATTEMPTS)
                    + stamp
                    + stamp,
                )
                for step, due_at in plan
            ]
            for plan in new.plans
        ]
        # Rows go in idempotency-key order (text: "enrollment:10:..." before "enrollment:9:..."),
        # so the unique index on the key is filled left to right instead of all over the tree.
        pairs = sorted(zip(enrollment_ids, members, strict=True), key=lambda pair: f"{pair[0]}:")
        for steps in encoded:
            steps.sort(key=lambda step: step[0])
        with cursor.copy(f"COPY messages ({_MESSAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_COPY_HEADER)
            fields = struct.pack("!h", 15)
            for start in range(0, len(pairs), _COPY_CHUNK):
                copy.write(b"".join(_message_rows(pairs[start : start + _COPY_CHUNK], encoded, fields)))
            copy.write(_COPY_TRAILER)


def _message_rows(
    chunk: Iterable[tuple[int, tuple[int, int]]],
    encoded: list[list[tuple[str, bytes, bytes]]],
    fields: bytes,
) -> Iterator[bytes]:
    for eid, (cid, plan) in chunk:
        enrollment, contact = _field_int(eid), _field_int(cid)
        for key, middle, tail in encoded[plan]:
            idempotency_key = _field_text(rows.enrollment_step_key(eid, key))
            yield fields + idempotency_key + contact + middle + enrollment + tail
