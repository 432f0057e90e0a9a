"""The hash-chained, append-only audit trail.

Each row's hash covers a canonical JSON form of its content plus the previous
row's hash. Appending takes a lock so the chain stays linear; ``prev_hash`` is
unique as a second line of defence.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from models_registry.models import AuditEvent

GENESIS_HASH = "0" * 64
# Any constant works; it only has to be the same for every writer.
_AUDIT_ADVISORY_LOCK_KEY = 727_274_001


@dataclass(frozen=True)
class ChainReport:
    checked: int
    ok: bool
    first_broken_id: int | None = None
    reason: str = ""


# One encoder for every call: json.dumps with options builds a new encoder each
# time, which was a large share of verifying a million rows.
_CANONICAL_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)


def canonical_json(value: Any) -> str:
    return _CANONICAL_ENCODER.encode(value)


def _normalise_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """Round-trip through JSON so what we hash is exactly what the database returns.

    PostgreSQL's jsonb stores numbers as decimals and refuses NaN and NUL
    characters, so values it would change (``5.0`` comes back as ``5.0`` but
    ``1e20`` as an integer, ``-0.0`` as ``0``) or refuse are made canonical first;
    otherwise a row could fail verification without anyone touching it.
    """
    return _jsonb_safe(json.loads(canonical_json(data or {})))


def _jsonb_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {_jsonb_safe(key): _jsonb_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonb_safe(item) for item in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)  # "nan", "inf", "-inf": jsonb has no such numbers
        return int(value) if value.is_integer() else value
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\\x00")
    return value


def compute_row_hash(
    *,
    prev_hash: str,
    event_time: datetime,
    actor_id: int | None,
    actor_repr: str,
    event_type: str,
    object_type: str,
    object_id: str,
    object_repr: str,
    data: dict[str, Any],
) -> str:
    content = {
        "prev_hash": prev_hash,
        "event_time": event_time.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": actor_id,
        "actor_repr": actor_repr,
        "event_type": event_type,
        "object_type": object_type,
        "object_id": object_id,
        "object_repr": object_repr,
        "data": data,
    }
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def audit_event_record(
    *,
    event_type: str,
    actor: AbstractBaseUser | None = None,
    obj: Model | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction."""
    actor_obj = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        _lock_chain_tail()
        last = AuditEvent.objects.order_by("-id").values_list("row_hash", flat=True).first()
        prev_hash = last or GENESIS_HASH
        event_time = timezone.now()
        fields = {
            "event_time": event_time,
            "actor_id": actor_obj.pk if actor_obj else None,
            "actor_repr": actor_obj.get_username() if actor_obj else "system",
            "event_type": event_type,
            "object_type": type(obj).__name__ if obj is not None else "",
            "object_id": str(obj.pk) if obj is not None else "",
            "object_repr": str(obj)[:200] if obj is not None else "",
            "data": _normalise_data(data),
        }
        row_hash = compute_row_hash(prev_hash=prev_hash, **fields)
        return AuditEvent.objects.create(prev_hash=prev_hash, row_hash=row_hash, **fields)


def _lock_chain_tail() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_AUDIT_ADVISORY_LOCK_KEY])
    # SQLite: transactions start IMMEDIATE (see tradebot.config), so writers are serial.


def verify_audit_chain(*, chunk_size: int = 50_000) -> ChainReport:
    """Walk the whole chain in id order; name the first row whose hash or link is wrong."""
    expected_prev = GENESIS_HASH
    checked = 0
    for row in _iter_rows(chunk_size):
        (pk, prev_hash, row_hash, event_time, actor_id, actor_repr, event_type,
         object_type, object_id, object_repr, data) = row  # fmt: skip
        if prev_hash != expected_prev:
            return ChainReport(checked, False, pk, "its prev_hash does not match the row before it")
        recomputed = compute_row_hash(
            prev_hash=prev_hash,
            event_time=event_time,
            actor_id=actor_id,
            actor_repr=actor_repr,
            event_type=event_type,
            object_type=object_type,
            object_id=object_id,
            object_repr=object_repr,
            data=data,
        )
        if recomputed != row_hash:
            return ChainReport(checked, False, pk, "its content does not match its hash")
        expected_prev = row_hash
        checked += 1
    return ChainReport(checked, True)


def _iter_rows(chunk_size: int) -> Iterator[tuple[Any, ...]]:
    """Keyset pagination: constant memory and no server-side cursor needed."""
    columns = (
        "id", "prev_hash", "row_hash", "event_time", "actor_id", "actor_repr", "event_type",
        "object_type", "object_id", "object_repr", "data",
    )  # fmt: skip
    last_id = 0
    while True:
        rows = list(
            AuditEvent.objects.filter(id__gt=last_id)
            .order_by("id")
            .values_list(*columns)[:chunk_size]
        )
        if not rows:
            return
        yield from rows
        last_id = rows[-1][0]
