"""Audit events keep the exact bytes their hash covers (AuditEvent.payload), so that
verification hashes stored bytes in bulk instead of rebuilding JSON per row.

Existing rows get their payload from their columns, through the writer's own definition
(services.audit.row_payload). That is safe even for a row someone edited before this
migration: verification checks the payload against the row's hash, and a payload built
from edited columns does not match it. The append-only guard is lifted for this one
UPDATE of the new column only, and put back in the same transaction.
"""

from typing import Any

from django.db import migrations, models

TABLE = "models_registry_auditevent"
PG_TRIGGER = "models_registry_audit_append_only"
BATCH = 5_000
COLUMNS = (
    "id", "prev_hash", "event_time", "actor_id", "actor_repr", "event_type", "object_type",
    "object_id", "object_repr", "data",
)  # fmt: skip


def _payloads(AuditEvent: Any, after: int) -> tuple[int | None, list[tuple[bytes, int]]]:
    """(last id read, [(payload, id)]) for the next batch of rows without a payload."""
    from models_registry.services.audit import row_payload

    rows = list(
        AuditEvent.objects.filter(id__gt=after, payload__isnull=True)
        .order_by("id")
        .values_list(*COLUMNS)[:BATCH]
    )
    if not rows:
        return None, []
    updates = [
        (row_payload(prev_hash=prev, event_time=when, actor_id=actor_id, actor_repr=actor_repr,
                     event_type=event_type, object_type=object_type, object_id=object_id,
                     object_repr=object_repr, data=data), pk)
        for (pk, prev, when, actor_id, actor_repr, event_type, object_type, object_id,
             object_repr, data) in rows
    ]  # fmt: skip
    return rows[-1][0], updates


def backfill(apps: Any, schema_editor: Any) -> None:
    AuditEvent = apps.get_model("models_registry", "AuditEvent")
    connection = schema_editor.connection
    if not AuditEvent.objects.filter(payload__isnull=True).exists():
        return
    with connection.cursor() as cursor:
        _lift_guard(cursor, connection.vendor)
        after: int | None = 0
        while after is not None:
            after, updates = _payloads(AuditEvent, after)
            cursor.executemany(f"UPDATE {TABLE} SET payload = %s WHERE id = %s", updates)  # noqa: S608 - constant table name
        _restore_guard(cursor, connection.vendor)


def _lift_guard(cursor: Any, vendor: str) -> None:
    if vendor == "postgresql":
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {PG_TRIGGER}")
    elif vendor == "sqlite":
        for statement in _sqlite_triggers().DROP:
            cursor.execute(statement)


def _restore_guard(cursor: Any, vendor: str) -> None:
    if vendor == "postgresql":
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {PG_TRIGGER}")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    elif vendor == "sqlite":
        for statement in _sqlite_triggers().CREATE:
            cursor.execute(statement)


def _sqlite_triggers() -> Any:
    from importlib import import_module

    return import_module("models_registry.migrations.0006_i14b_sqlite_audit_triggers")


class Migration(migrations.Migration):
    dependencies = [("models_registry", "0012_i26a_host_identity")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="payload",
            field=models.BinaryField(editable=False, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
