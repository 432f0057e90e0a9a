"""Every SQLite trigger the registry relies on, installed again after each ``migrate``.

SQLite cannot alter most columns in place: Django rebuilds the table (create a copy,
move the rows, drop the old one), and the rebuild silently drops that table's triggers.
A later migration that adds a field to a guarded table (a run's policy, an audit row's
payload) would so remove the status guards or the append-only guard on the embedded
default, with nothing failing. So the guards are not left to the migrations that first
made them: after every ``migrate`` on SQLite, this module re-runs each of their
installers (each ``CREATE TRIGGER IF NOT EXISTS`` or drop-and-create, so it is idempotent).
PostgreSQL keeps its triggers across ``ALTER TABLE`` and needs none of this.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

# (migration module, name of its SQLite installer taking (apps, schema_editor))
_INSTALLERS = (
    ("0006_i14b_sqlite_audit_triggers", "forwards"),
    ("0010_issue12a_model_trials", "sqlite_forwards"),
    ("0012_i25_validation_policy", "sqlite_forwards"),
    ("0013_i24_status_guards", "sqlite_forwards"),
)


def _migration(name: str) -> Any:
    return import_module(f"models_registry.migrations.{name}")


def _installers() -> list[Callable[[Any, Any], None]]:
    found = [getattr(_migration(module), function) for module, function in _INSTALLERS]
    from models_registry.events import EventType

    # After every migration the database is at the code's catalogue: install exactly it.
    catalogue = _migration("0012_i24_event_catalogue")
    found.append(catalogue.replace_event_type_check(tuple(EventType.values)))
    return found


def sqlite_triggers_reinstall(*, using: str = "default", **_: Any) -> None:
    """A ``post_migrate`` receiver: put back every guard a table rebuild may have dropped."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    with connection.schema_editor() as editor:
        for install in _installers():
            install(None, editor)
