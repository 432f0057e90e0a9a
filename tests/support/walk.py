"""Bring a test row to a status the honest way: born in its initial status, then moved
along its declared table (``models_registry.transitions``) one audited move at a time.

Rows are never born in a later status (the database refuses it), so a fixture that needs
a passed run or a succeeded deployment walks one there, with the fields it wants written
on the last move.
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.db import models, transaction

from models_registry.transitions import Machine, Move, machine_for, transition

RowT = TypeVar("RowT", bound=models.Model)


def path_to(machine: Machine, source: str, target: str) -> list[Move]:
    """The shortest list of moves from ``source`` to ``target`` (first declared wins)."""
    if source == target:
        return []
    queue: deque[tuple[str, list[Move]]] = deque([(source, [])])
    seen = {source}
    while queue:
        status, path = queue.popleft()
        for move in machine.moves:
            if status in move.sources and move.target not in seen:
                if move.target == target:
                    return [*path, move]
                seen.add(move.target)
                queue.append((move.target, [*path, move]))
    raise LookupError(f"{machine.name}: no way from {source} to {target}")


def walker() -> Any:
    """A superuser to act the permissioned moves (approve, reject, apply a change)."""
    user, _created = get_user_model().objects.get_or_create(
        username="walk_superuser", defaults={"is_superuser": True, "is_staff": True}
    )
    return user


def walk(
    row: RowT, to: str, *, field: str = "status", fields: dict[str, Any] | None = None
) -> RowT:
    """Move ``row`` to ``to`` along its table; ``fields`` are written with the last move."""
    machine = machine_for(type(row), field)
    path = path_to(machine, str(getattr(row, field)), to)
    with transaction.atomic():
        for index, move in enumerate(path):
            last = index == len(path) - 1
            row = transition(
                machine=machine,
                row=row,
                to=move.target,
                event=move.event,
                actor=walker() if move.permission else None,
                fields=fields if last else None,
            )
        if not path and fields:
            for name, value in fields.items():
                setattr(row, name, value)
            row.save(update_fields=list(fields))
    row.refresh_from_db()
    return row


def create_in(model: type[RowT], status: str, *, field: str = "status", **values: Any) -> RowT:
    """``model.objects.create(**values)`` in its initial status, then walked to ``status``.

    Fields other than the status are written at birth, like a fixture would.
    """
    machine = machine_for(model, field)
    birth = status if status in machine.initial else machine.initial[0]
    row = model._default_manager.create(**{field: birth, **values})
    return walk(row, status, field=field) if status != birth else row
