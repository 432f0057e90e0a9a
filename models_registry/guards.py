"""The database-side guard on lifecycle columns (``ModelVersion.state`` and job statuses).

On PostgreSQL, triggers (django-pgtrigger, see ``models.py``) refuse an UPDATE that
changes one of those columns unless the transaction has set ``tradebot.transition``.
Only the transition services set it, for the one write they make, and clear it
again right after; ``QuerySet.update``, ``_base_manager.update`` or raw SQL from
anywhere else are refused by the database itself. SQLite has no such triggers:
there the Python guards in ``models.py`` are the protection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

TRANSITION_SETTING = "tradebot.transition"

# The trigger condition: the guarded column changes and no service opened the gate.
GATE_CLOSED_SQL = f"coalesce(current_setting('{TRANSITION_SETTING}', true), '') = ''"


@contextmanager
def transition_write(who: str) -> Iterator[None]:
    """Open the gate for one write inside the caller's transaction, then close it."""
    if connection.vendor != "postgresql":
        yield
        return
    if not connection.in_atomic_block:
        raise RuntimeError("a lifecycle write must run inside transaction.atomic()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [TRANSITION_SETTING, who or "service"])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, '', true)", [TRANSITION_SETTING])
