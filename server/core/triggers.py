"""Database triggers for rules a CHECK constraint cannot express (they span rows or tables).

Django has no composite foreign keys and no transition constraints, so two invariants are kept
by triggers, written once for each supported database vendor:
- a comparison's two samples share the comparison's prompt;
- a job's status moves only along its state machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import migrations


@dataclass(frozen=True)
class Trigger:
    name: str
    table: str
    events: str  # "INSERT OR UPDATE" (PostgreSQL spelling); SQLite gets one trigger per event
    condition_sql: str  # a boolean SQL expression over NEW / OLD that is TRUE when the row is invalid
    message: str


def _postgres_sql(trigger: Trigger) -> tuple[str, str]:
    function = f"{trigger.name}_fn"
    create = f"""
    CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$
    BEGIN
        IF {trigger.condition_sql} THEN
            RAISE EXCEPTION '{trigger.message}' USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END;
    $$ LANGUAGE plpgsql;
    DROP TRIGGER IF EXISTS {trigger.name} ON {trigger.table};
    CREATE TRIGGER {trigger.name} BEFORE {trigger.events} ON {trigger.table}
        FOR EACH ROW EXECUTE FUNCTION {function}();
    """
    drop = f"DROP TRIGGER IF EXISTS {trigger.name} ON {trigger.table}; DROP FUNCTION IF EXISTS {function}();"
    return create, drop


def _sqlite_sql(trigger: Trigger) -> tuple[list[str], list[str]]:
    creates, drops = [], []
    for event in [part.strip() for part in trigger.events.split(" OR ")]:
        if event == "INSERT" and "OLD." in trigger.condition_sql:
            continue  # transition rules only apply to updates
        name = f"{trigger.name}_{event.lower()}"
        creates.append(
            f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {event} ON {trigger.table} "
            f"FOR EACH ROW WHEN {trigger.condition_sql} "
            f"BEGIN SELECT RAISE(ABORT, '{trigger.message}'); END;"
        )
        drops.append(f"DROP TRIGGER IF EXISTS {name};")
    return creates, drops


def install_trigger(trigger: Trigger) -> migrations.RunPython:
    """A migration operation that creates ``trigger`` on whichever vendor the migration runs on."""

    def forward(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(_postgres_sql(trigger)[0])
        elif vendor == "sqlite":
            for statement in _sqlite_sql(trigger)[0]:
                schema_editor.execute(statement)
        else:
            raise RuntimeError(f"No trigger dialect for database vendor {vendor!r}.")

    def backward(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(_postgres_sql(trigger)[1])
        elif vendor == "sqlite":
            for statement in _sqlite_sql(trigger)[1]:
                schema_editor.execute(statement)

    return migrations.RunPython(forward, backward)
