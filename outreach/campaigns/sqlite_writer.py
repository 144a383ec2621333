"""SQLite: new enrollments and their messages written with two INSERT ... SELECT statements."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, and_, literal, literal_column, select, true
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from outreach.campaigns.eligibility import ENROLLMENTS
from outreach.campaigns.planning import NewEnrollments
from outreach.models import EnrollmentState, Message, UTCDateTime
from outreach.outbox import rows

MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_tmp = MetaData()


_members = Table(
    "tmp_enroll_members",
    _tmp,
    Column("contact_id", Integer),
    Column("plan_id", Integer),
    Column("started_at", UTCDateTime()),
    prefixes=["TEMPORARY"],
)
_plans = Table(
    "tmp_enroll_plans",
    _tmp,
    Column("plan_id", Integer),
    Column("step_key", String(64)),
    Column("channel", String(8)),
    Column("template", String(200)),
    Column("due_at", UTCDateTime()),
    prefixes=["TEMPORARY"],
)


def insert_fresh_sql(session: Session, new: NewEnrollments) -> None:
    """SQLite: the (contact, plan) pairs and the plans go into temporary tables, and two
    INSERT ... SELECT statements expand them into enrollments and messages."""
    campaign = new.campaign
    connection = session.connection()
    _members.create(connection)
    _plans.create(connection)
    try:
        connection.execute(
            _members.insert(),
            [{"contact_id": c, "plan_id": p, "started_at": new.started_at} for c, p in new.members],
        )
        connection.execute(
            _plans.insert(),
            [
                {
                    "plan_id": plan_id,
                    "step_key": step.key,
                    "channel": step.channel,
                    "template": step.template,
                    "due_at": due_at,
                }
                for plan_id, plan in enumerate(new.plans)
                for step, due_at in plan
            ],
        )
        stamp = literal(new.created_at, UTCDateTime())
        enrollments = ENROLLMENTS
        connection.execute(
            sqlite.insert(enrollments).from_select(
                [
                    "contact_id",
                    "campaign_id",
                    "state",
                    "started_at",
                    "created_at",
                    "updated_at",
                    "stopped_channels",
                ],
                select(
                    _members.c.contact_id,
                    literal(campaign.id),
                    literal(str(EnrollmentState.ACTIVE)),
                    _members.c.started_at,
                    stamp,
                    stamp,
                    literal_column("'[]'"),
                ).where(true()),
            )
        )
        e = enrollments.c
        key = rows.enrollment_step_key_sql(e.id, _plans.c.step_key)
        connection.execute(
            sqlite.insert(MESSAGES).from_select(
                [
                    "idempotency_key",
                    "contact_id",
                    "channel",
                    "category",
                    "kind",
                    "template",
                    "context",
                    "enrollment_id",
                    "step_key",
                    "due_at",
                    "state",
                    "attempts",
                    "max_attempts",
                    "created_at",
                    "updated_at",
                ],
                select(
                    key,
                    e.contact_id,
                    _plans.c.channel,
                    literal(campaign.category),
                    literal(str(rows.DEFAULT_KIND)),
                    _plans.c.template,
                    literal_column("'{}'"),
                    e.id,
                    _plans.c.step_key,
                    _plans.c.due_at,
                    literal(str(rows.INITIAL_STATE)),
                    literal(rows.INITIAL_ATTEMPTS),
                    literal(rows.MAX_ATTEMPTS),
                    stamp,
                    stamp,
                )
                .select_from(
                    _members.join(
                        enrollments, and_(e.contact_id == _members.c.contact_id, e.campaign_id == campaign.id)
                    ).join(_plans, _plans.c.plan_id == _members.c.plan_id)
                )
                .where(true()),
            )
        )
    finally:
        _plans.drop(connection)
        _members.drop(connection)
