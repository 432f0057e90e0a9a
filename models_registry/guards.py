"""The database-side guard on status columns (every column a ``transitions.Machine`` owns).

Triggers refuse an UPDATE that changes one of those columns, and an INSERT of a row in
any status but its initial ones, unless the transaction opened the gate. Only
``transitions.transition`` opens it (through ``transition_write``), for the one write it
makes, and closes it right after; ``QuerySet.update``, ``_base_manager.update``,
``objects.create(status="passed")`` or raw SQL from anywhere else are refused by the
database itself.

- PostgreSQL: triggers from django-pgtrigger (``models.py``); the gate is the
  transaction-local setting ``tradebot.transition``.
- SQLite (the embedded default): raw triggers (migration 0013_i24_status_guards); the gate
  is the SQL function ``tradebot_transition_open()``, registered on every connection
  Django opens (``register_sqlite_gate``), which reads a flag of that connection. A
  connection that never registered it (the sqlite3 shell) cannot pass the trigger at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

TRANSITION_SETTING = "tradebot.transition"
SQLITE_GATE_FUNCTION = "tradebot_transition_open"

# The trigger condition: the guarded column changes and no service opened the gate.
GATE_CLOSED_SQL = f"coalesce(current_setting('{TRANSITION_SETTING}', true), '') = ''"
SQLITE_GATE_CLOSED_SQL = f"{SQLITE_GATE_FUNCTION}() = 0"


@contextmanager
def transition_write(who: str) -> Iterator[None]:
    """Open the gate for one write inside the caller's transaction, then close it."""
    if not connection.in_atomic_block:
        raise RuntimeError("a lifecycle write must run inside transaction.atomic()")
    if connection.vendor == "sqlite":
        connection._tradebot_transition = who or "service"  # type: ignore[attr-defined]
        try:
            yield
        finally:
            connection._tradebot_transition = ""  # type: ignore[attr-defined]
        return
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [TRANSITION_SETTING, who or "service"])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, '', true)", [TRANSITION_SETTING])


def register_sqlite_gate(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: give each SQLite connection its gate function."""
    if connection.vendor != "sqlite":
        return
    wrapper = connection

    def gate_open() -> int:
        return 1 if getattr(wrapper, "_tradebot_transition", "") else 0

    connection.connection.create_function(SQLITE_GATE_FUNCTION, 0, gate_open)


def sqlite_guard_statements(table: str, column: str, initial: tuple[str, ...]) -> list[str]:
    """CREATE TRIGGER statements guarding ``table.column`` on SQLite (see the module doc)."""
    allowed = ", ".join("'" + value.replace("'", "''") + "'" for value in initial)
    message = f"{table}.{column} changes only through a transition"
    return [
        f"""CREATE TRIGGER IF NOT EXISTS {table}_{column}_guard_update
        BEFORE UPDATE OF "{column}" ON {table}
        WHEN NEW."{column}" IS NOT OLD."{column}" AND {SQLITE_GATE_CLOSED_SQL}
        BEGIN SELECT RAISE(ABORT, '{message}'); END""",
        f"""CREATE TRIGGER IF NOT EXISTS {table}_{column}_guard_insert
        BEFORE INSERT ON {table}
        WHEN NEW."{column}" NOT IN ({allowed}) AND {SQLITE_GATE_CLOSED_SQL}
        BEGIN SELECT RAISE(ABORT, '{table}: a new row starts in {column} {" or ".join(initial)}');
        END""",
    ]


def sqlite_drop_statements(table: str, column: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_{column}_guard_update",
        f"DROP TRIGGER IF EXISTS {table}_{column}_guard_insert",
    ]
