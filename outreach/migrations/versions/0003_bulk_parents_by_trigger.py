"""The foreign keys of the tables enrollment writes in bulk, kept by triggers.

Revision ID: 0003
Revises: 0002

``messages.contact_id``, ``messages.appointment_id``, ``enrollments.contact_id`` and
``enrollments.campaign_id`` keep the promises of ``REFERENCES … ON DELETE CASCADE``:

- a row names parents that exist. On PostgreSQL the parents are locked ``FOR KEY SHARE``
  until commit, as a declared foreign key locks them, so a concurrent delete waits;
- deleting a parent deletes the rows that name it (emptying the parent's table with
  TRUNCATE, on PostgreSQL, deletes them too);
- a parent's id, which rows name, does not change.

Why not declared foreign keys: PostgreSQL checks those once per inserted row, each with a
query of its own. Enrolling 100k contacts writes 100k enrollments and 500k messages with
two COPY statements, and those per-row checks were 40 % of its time (docs/campaigns.md).
Here a statement-level trigger checks all of a statement's new rows at once, from its
transition table. SQLite checks row by row, as it would anyway.

Databases made before the initial migration was regenerated without these constraints lose
them here on PostgreSQL. On SQLite, where a constraint cannot be dropped in place, they stay
and are checked twice; for the same reason a downgrade restores them on PostgreSQL only.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, parent table); every parent is referenced by its integer id.
REFERENCES = (
    ("messages", "contact_id", "contacts"),
    ("messages", "appointment_id", "appointments"),
    ("enrollments", "contact_id", "contacts"),
    ("enrollments", "campaign_id", "campaigns"),
)
CHILDREN = sorted({table for table, _, _ in REFERENCES})
PARENTS = sorted({parent for _, _, parent in REFERENCES})

_PG_FUNCTIONS = r"""
CREATE FUNCTION lock_parents(child text, child_column text, parent text, ids integer[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    locked integer;
    missing integer;
BEGIN
    IF ids IS NULL THEN
        RETURN;
    END IF;
    -- Locked in id order, so that two writers never wait for each other in a circle.
    EXECUTE format(
        'SELECT count(*) FROM (SELECT 1 FROM %I WHERE id = ANY($1) ORDER BY id FOR KEY SHARE) AS p',
        parent
    ) INTO locked USING ids;
    IF locked < cardinality(ids) THEN
        EXECUTE format(
            'SELECT min(w) FROM unnest($1) AS w WHERE NOT EXISTS (SELECT 1 FROM %I WHERE id = w)',
            parent
        ) INTO missing USING ids;
        RAISE EXCEPTION 'insert or update on table "%" names a row of "%" that does not exist',
                child, parent
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (%s)=(%s) is not present in table "%s".',
                                  child_column, missing, parent);
    END IF;
END $$;

-- Arguments: (column, parent table) pairs. DISTINCT sorts, so each parent is looked up and
-- locked once, in id order.
CREATE FUNCTION check_parents_of_statement() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids integer[];
BEGIN
    FOR i IN 0 .. TG_NARGS - 1 BY 2 LOOP
        EXECUTE format(
            'SELECT array_agg(DISTINCT %1$I) FILTER (WHERE %1$I IS NOT NULL) FROM added', TG_ARGV[i]
        ) INTO ids;
        PERFORM lock_parents(TG_TABLE_NAME, TG_ARGV[i], TG_ARGV[i + 1], ids);
    END LOOP;
    RETURN NULL;
END $$;

-- Row by row on update: no statement of the application changes these columns, and a
-- statement trigger with a transition table would copy every row of every state update.
CREATE FUNCTION check_parents_of_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    value integer;
BEGIN
    FOR i IN 0 .. TG_NARGS - 1 BY 2 LOOP
        EXECUTE format('SELECT ($1).%I', TG_ARGV[i]) INTO value USING NEW;
        PERFORM lock_parents(TG_TABLE_NAME, TG_ARGV[i], TG_ARGV[i + 1], array_remove(ARRAY[value], NULL));
    END LOOP;
    RETURN NULL;
END $$;

-- Arguments: (table, column) pairs of the rows that name the deleted parents. After TRUNCATE
-- every row that named a parent goes, and only those. (TRUNCATE of the children here would
-- fail when the same statement truncated them too, as the tests' clean-up does.)
CREATE FUNCTION delete_children() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    named text := CASE TG_OP WHEN 'TRUNCATE' THEN 'IS NOT NULL' ELSE 'IN (SELECT id FROM gone)' END;
BEGIN
    FOR i IN 0 .. TG_NARGS - 1 BY 2 LOOP
        EXECUTE format('DELETE FROM %I WHERE %I ', TG_ARGV[i], TG_ARGV[i + 1]) || named;
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION keep_parent_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.id never changes: other rows name it', TG_TABLE_NAME
        USING ERRCODE = 'foreign_key_violation';
END $$;
"""

_PG_FUNCTION_NAMES = (
    "check_parents_of_statement()",
    "check_parents_of_row()",
    "delete_children()",
    "keep_parent_id()",
    "lock_parents(text, text, text, integer[])",
)


def _args(*values: str) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _pg_triggers() -> list[str]:
    statements = []
    for child in CHILDREN:
        refs = [(column, parent) for table, column, parent in REFERENCES if table == child]
        pairs = _args(*(name for ref in refs for name in ref))
        columns = ", ".join(column for column, _ in refs)
        changed = " OR ".join(f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column, _ in refs)
        statements += [
            f"CREATE TRIGGER {child}_parents_on_insert AFTER INSERT ON {child} "
            f"REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
            f"EXECUTE FUNCTION check_parents_of_statement({pairs})",
            f"CREATE TRIGGER {child}_parents_on_update AFTER UPDATE OF {columns} ON {child} "
            f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION check_parents_of_row({pairs})",
        ]
    for parent in PARENTS:
        pairs = _args(*(name for table, column, p in REFERENCES if p == parent for name in (table, column)))
        statements += [
            f"CREATE TRIGGER {parent}_delete_children AFTER DELETE ON {parent} "
            f"REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION delete_children({pairs})",
            f"CREATE TRIGGER {parent}_truncate_children AFTER TRUNCATE ON {parent} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION delete_children({pairs})",
            f"CREATE TRIGGER {parent}_keep_id BEFORE UPDATE OF id ON {parent} "
            f"FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION keep_parent_id()",
        ]
    return statements


def _sqlite_triggers() -> list[str]:
    # Every name in these statements comes from REFERENCES above (S608 is about input).
    statements = []
    for table, column, parent in REFERENCES:
        for event, action in (("insert", "INSERT"), ("update", f"UPDATE OF {column}")):
            statements.append(
                f"CREATE TRIGGER {table}_{column}_on_{event} BEFORE {action} ON {table} "  # noqa: S608
                f"WHEN NEW.{column} IS NOT NULL "
                f"AND NOT EXISTS (SELECT 1 FROM {parent} WHERE id = NEW.{column}) "
                f"BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: "
                f"{table}.{column} names no row of {parent}'); END"
            )
    for parent in PARENTS:
        deletes = " ".join(
            f"DELETE FROM {table} WHERE {column} = OLD.id;"  # noqa: S608
            for table, column, p in REFERENCES
            if p == parent
        )
        statements += [
            f"CREATE TRIGGER {parent}_delete_children AFTER DELETE ON {parent} BEGIN {deletes} END",
            f"CREATE TRIGGER {parent}_keep_id BEFORE UPDATE OF id ON {parent} WHEN OLD.id IS NOT NEW.id "
            f"BEGIN SELECT RAISE(ABORT, '{parent}.id never changes: other rows name it'); END",
        ]
    return statements


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for statement in _sqlite_triggers():
            op.execute(statement)
        return
    for table, column, parent in REFERENCES:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS fk_{table}_{column}_{parent}")
    op.execute(_PG_FUNCTIONS)
    for statement in _pg_triggers():
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for table, column, _ in REFERENCES:
            op.execute(f"DROP TRIGGER {table}_{column}_on_insert")
            op.execute(f"DROP TRIGGER {table}_{column}_on_update")
        for parent in PARENTS:
            op.execute(f"DROP TRIGGER {parent}_delete_children")
            op.execute(f"DROP TRIGGER {parent}_keep_id")
        return
    for child in CHILDREN:
        for trigger in ("parents_on_insert", "parents_on_update"):
            op.execute(f"DROP TRIGGER {child}_{trigger} ON {child}")
    for parent in PARENTS:
        for trigger in ("delete_children", "truncate_children", "keep_id"):
            op.execute(f"DROP TRIGGER {parent}_{trigger} ON {parent}")
    for function in _PG_FUNCTION_NAMES:
        op.execute(f"DROP FUNCTION {function}")
    for table, column, parent in REFERENCES:
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_{column}_{parent} "
            f"FOREIGN KEY ({column}) REFERENCES {parent} (id) ON DELETE CASCADE"
        )
