"""The writer of the hash-chained, append-only audit trail: one row, its payload, its hash.

Each row's hash covers a canonical JSON form of its content plus the previous
row's hash. Appending takes a lock so the chain stays linear; ``prev_hash`` is
unique as a second line of defence.

A chain alone cannot show that its newest rows were deleted, or that someone
with the database rewrote it and recomputed every hash. So:

- where a key is configured (``AUDIT_HMAC_KEY_FILE``: a file outside the
  database, or ``AUDIT_HMAC_KEY``), each hash is an HMAC-SHA256 under it, which a
  database intruder cannot recompute;
- the chain head (last id and hash) is anchored outside the table: appended, after
  every committing transaction that wrote events and at every verification, to an
  append-only file (``AUDIT_ANCHOR_FILE``, opened O_APPEND and fsynced), and
  written to every host at each deploy. ``verify_audit_chain`` checks the table
  against those anchors and names what is missing.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypedDict

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from models_registry.events import event_type_checked
from models_registry.models import AuditEvent
from models_registry.services.audit.anchors import _anchor_on_commit
from models_registry.services.audit.canonical import canonical_json
from models_registry.services.audit.key import audit_hmac_key

GENESIS_HASH = "0" * 64


class _Configured(enum.Enum):
    """compute_row_hash(key=_CONFIGURED): use the configured key (None means unkeyed)."""

    KEY = "configured"


_CONFIGURED: Final = _Configured.KEY
# Any constant works; it only has to be the same for every writer.
_AUDIT_ADVISORY_LOCK_KEY = 727_274_001


class RowContent(TypedDict):
    """The hashed columns of an audit row, besides prev_hash."""

    event_time: datetime
    actor_id: int | None
    actor_repr: str
    event_type: str
    object_type: str
    object_id: str
    object_repr: str
    data: dict[str, Any]


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
    key: bytes | Literal[_Configured.KEY] | None = None,
) -> str:
    """sha256 of the row's canonical content, or its HMAC-SHA256 under `key` (pass
    `key=_CONFIGURED` for the configured key)."""
    payload = row_payload(
        prev_hash=prev_hash, event_time=event_time, actor_id=actor_id, actor_repr=actor_repr,
        event_type=event_type, object_type=object_type, object_id=object_id,
        object_repr=object_repr, data=data,
    )  # fmt: skip
    return _digester(audit_hmac_key() if key is _CONFIGURED else key)(payload)


def row_payload(
    *,
    prev_hash: str,
    event_time: datetime,
    actor_id: int | None,
    actor_repr: str,
    event_type: str,
    object_type: str,
    object_id: str,
    object_repr: str,
    data: Any,
) -> bytes:
    """The bytes a row's hash covers: the canonical JSON of its content. This is the
    definition; the PostgreSQL fast path of verification (_PG_PAYLOAD_SQL) must agree."""
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
    return canonical_json(content).encode()


def _digester(key: bytes | None) -> Callable[[bytes], str]:
    """The row-hash function: sha256, or HMAC-SHA256 whose keyed pads are hashed once."""
    if key is None:
        return lambda payload: hashlib.sha256(payload).hexdigest()
    base = _keyed_hmac(key)

    def keyed(payload: bytes) -> str:
        mac = base.copy()
        mac.update(payload)
        return mac.hexdigest()

    return keyed


_HMAC_BASES: dict[bytes, hmac.HMAC] = {}


def _keyed_hmac(key: bytes) -> hmac.HMAC:
    base = _HMAC_BASES.get(key)
    if base is None:
        base = _HMAC_BASES[key] = hmac.new(key, digestmod="sha256")
    return base


def audit_event_record(
    *,
    event_type: str,
    actor: User | None = None,
    obj: Model | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction.

    ``event_type`` must be in the event catalogue (``models_registry.events``).
    """
    event_type = event_type_checked(event_type)
    actor_obj = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        _lock_chain_tail()
        last = AuditEvent.objects.order_by("-id").values_list("row_hash", flat=True).first()
        prev_hash = last or GENESIS_HASH
        event_time = timezone.now()
        fields: RowContent = {
            "event_time": event_time,
            "actor_id": actor_obj.pk if actor_obj else None,
            "actor_repr": actor_obj.get_username() if actor_obj else "system",
            "event_type": event_type,
            "object_type": type(obj).__name__ if obj is not None else "",
            "object_id": str(obj.pk) if obj is not None else "",
            "object_repr": str(obj)[:200] if obj is not None else "",
            "data": _normalise_data(data),
        }
        # The bytes hashed are stored with the row: verification hashes them in bulk
        # (services/audit/payload.py) and checks them against the columns.
        payload = row_payload(prev_hash=prev_hash, **fields)
        row_hash = _digester(audit_hmac_key())(payload)
        event = AuditEvent.objects.create(
            prev_hash=prev_hash, row_hash=row_hash, payload=payload, **fields
        )
        _anchor_on_commit()
        return event


def _lock_chain_tail() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_AUDIT_ADVISORY_LOCK_KEY])
    # SQLite: transactions start IMMEDIATE (see tradebot.config), so writers are serial.
