"""Verification of the audit chain: walk every row in id order (the stored-payload fast
path in payload.py, a doubted batch row by row from its columns, with a PostgreSQL path
that builds the canonical bytes in the database), then compare the head with every anchor."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection

from models_registry.models import AuditEvent
from models_registry.services.audit.anchors import (
    Anchor,
    _load_anchors,
    anchor_append,
    anchors_in_conflict,
)
from models_registry.services.audit.canonical import canonical_json_of_loaded
from models_registry.services.audit.chain import GENESIS_HASH, _digester, row_payload
from models_registry.services.audit.key import audit_hmac_key
from models_registry.services.audit.payload import WalkPosition, fast_walk
from models_registry.services.audit.prefetch import _prefetched


@dataclass(frozen=True)
class ChainReport:
    checked: int
    ok: bool
    first_broken_id: int | None = None
    reason: str = ""
    keyed: bool = False
    anchors_checked: int = 0
    last_id: int | None = None
    last_hash: str | None = None


def verify_audit_chain(
    *, chunk_size: int = 20_000, extra_anchors: Iterable[tuple[str, str]] = ()
) -> ChainReport:
    """Walk the whole chain in id order; name the first row whose hash or link is wrong,
    then compare its head with every anchor (the anchor file, and `extra_anchors`:
    (source, text) pairs such as a host's copy). A verified chain is anchored again."""
    key = audit_hmac_key()
    anchors, problems = _load_anchors(key, extra_anchors)
    problems += anchors_in_conflict(anchors)
    if problems:
        return ChainReport(0, False, None, problems[0], keyed=key is not None)
    wanted = {anchor.last_id: anchor for anchor in anchors}
    report = _walk(chunk_size, key, wanted)
    if not report.ok:
        return report
    failure = _compare_with_anchors(report, anchors)
    if failure is not None:
        return failure
    if report.last_id is not None:
        anchor_append(Anchor(report.last_id, report.last_hash or ""))
    return report


def _walk(chunk_size: int, key: bytes | None, wanted: dict[int, Anchor]) -> ChainReport:
    """Whole batches on the fast path (stored payloads, audit_payload); a batch it doubts,
    and every batch on a database without it, row by row on the reference path, which
    names the first broken row. Then the fast path resumes after that batch."""
    position = WalkPosition(0, GENESIS_HASH, 0)
    anchors = {pk: anchor.row_hash for pk, anchor in wanted.items()}
    digest = _digester(key)
    while True:
        position = fast_walk(position, chunk_size=chunk_size, digest=digest, anchors=anchors)
        if position.done:
            break
        report, position = _walk_reference_batch(position, chunk_size, key, wanted)
        if report is not None:
            return report
    last_id = position.after_id or None
    return ChainReport(
        position.checked,
        True,
        keyed=key is not None,
        last_id=last_id,
        last_hash=None if last_id is None else position.prev_hash,
    )


def _walk_reference_batch(
    position: WalkPosition, chunk_size: int, key: bytes | None, wanted: dict[int, Anchor]
) -> tuple[ChainReport | None, WalkPosition]:
    """The next batch after `position`, each row rebuilt from its columns: a report naming
    the first broken row, or None and the position after the batch (done at the end)."""
    expected_prev, checked, last_id = position.prev_hash, position.checked, position.after_id
    keyed = key is not None
    with contextlib.closing(
        _iter_hashed(chunk_size, _digester(key), after_id=position.after_id)
    ) as batches:
        batch = next(batches, None)
    if batch is None:
        return None, WalkPosition(last_id, expected_prev, checked, done=True)
    for pk, prev_hash, row_hash, recomputed in batch:
        if prev_hash != expected_prev:
            return ChainReport(
                checked, False, pk, "its prev_hash does not match the row before it", keyed,
            ), position  # fmt: skip
        if recomputed is None:
            return ChainReport(checked, False, pk, _UNREADABLE, keyed), position
        stored_differs = isinstance(recomputed, _StoredDiffers)
        if stored_differs:
            recomputed = recomputed.digest
        if recomputed != row_hash:
            reason = "its content does not match its hash" + (
                " (HMAC under the configured key)" if keyed else ""
            )
            return ChainReport(checked, False, pk, reason, keyed), position
        anchor = wanted.get(pk)
        if anchor is not None and anchor.row_hash != row_hash:
            return ChainReport(
                checked,
                False,
                pk,
                f"its hash differs from the anchor in {anchor.source}: the chain was "
                "rewritten from here",
                keyed,
            ), position
        if stored_differs:  # the columns match the hash: the stored copy was changed
            return ChainReport(checked, False, pk, _PAYLOAD_REASON, keyed), position
        expected_prev = row_hash
        last_id = pk
        checked += 1
    return None, WalkPosition(last_id, expected_prev, checked)


def _compare_with_anchors(report: ChainReport, anchors: list[Anchor]) -> ChainReport | None:
    """Every anchored head must still be in the table: otherwise rows were removed."""
    if not anchors:
        return None
    highest = max(anchors, key=lambda anchor: anchor.last_id)
    last = report.last_id or 0
    if highest.last_id > last:
        missing = (
            f"every event (#1 to #{highest.last_id})"
            if report.last_id is None
            else f"events #{last + 1} to #{highest.last_id}"
        )
        return ChainReport(
            report.checked,
            False,
            last + 1,
            f"{missing} missing: {highest.source} anchors the chain at #{highest.last_id} "
            f"({highest.row_hash[:12]}), the table ends at #{last or 'nothing'}",
            report.keyed,
            len(anchors),
            report.last_id,
            report.last_hash,
        )
    return ChainReport(
        report.checked, True, keyed=report.keyed, anchors_checked=len(anchors),
        last_id=report.last_id, last_hash=report.last_hash,
    )  # fmt: skip


# --------------------------------------------------------------------------- reading rows

# A row as the walk sees it: id, prev_hash, row_hash and `digest` of the bytes its hash
# covers (None: the content cannot be put in canonical form, e.g. event_time 'infinity').
# `digest` is a _StoredDiffers when the row stores payload bytes other than its columns give.
HashedRow = tuple[int, str, str, Any]
_UNREADABLE = "its content cannot be read back into canonical form (event_time out of range?)"


@dataclass(frozen=True)
class _StoredDiffers:
    """The digest of the payload rebuilt from the columns, of a row whose stored payload
    (what the fast path hashes) is other bytes."""

    digest: Any


_PAYLOAD_REASON = "its stored payload differs from what its columns give"
_COLUMNS = (
    "id", "prev_hash", "row_hash", "event_time", "actor_id", "actor_repr", "event_type",
    "object_type", "object_id", "object_repr", "data", "payload",
)  # fmt: skip

# PostgreSQL writes the canonical JSON around `data` itself, in its own process, so Python
# only parses and re-encodes `data` (whose key order and number forms jsonb changes) and
# hashes. Byte-identical to row_payload: the keys in sorted order; to_json escapes a string
# exactly as json's encode_basestring does with ensure_ascii=False (", \\, \b \f \n \r \t
# short, other controls as lowercase \u00XX, the rest as is); to_char prints the UTC time as
# isoformat(timespec="microseconds") does. tests/registry/test_audit_verify_fast.py holds
# both to that on awkward rows.
_PG_PAYLOAD_SQL = (
    "SELECT id, prev_hash, row_hash, "
    """'{"actor_id":' || coalesce(actor_id::text, 'null') """
    """|| ',"actor_repr":' || to_json(actor_repr)::text || ',"data":', """
    "data::text, "
    """',"event_time":"' """
    """|| to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') """
    """|| '","event_type":' || to_json(event_type)::text """
    """|| ',"object_id":' || to_json(object_id)::text """
    """|| ',"object_repr":' || to_json(object_repr)::text """
    """|| ',"object_type":' || to_json(object_type)::text """
    """|| ',"prev_hash":' || to_json(prev_hash)::text || '}', payload """
    "FROM models_registry_auditevent WHERE id > %s ORDER BY id LIMIT %s"
)


def _iter_hashed(
    chunk_size: int, digest: Callable[[bytes], Any], after_id: int = 0
) -> Generator[list[HashedRow], None, None]:
    """The chain in id order, in batches of `chunk_size` rows (keyset pagination over the
    primary key: memory bounded by a few batches, no server-side cursor or transaction),
    each row with `digest` of its payload, computed in the same pass that builds it."""
    if connection.vendor == "postgresql":
        yield from _pg_hashed(chunk_size, digest, after_id)
    else:
        yield from _orm_hashed(chunk_size, digest, after_id)


def _checked_digest(
    payload: bytes | None, stored: bytes | memoryview | None, digest: Callable[[bytes], Any]
) -> Any:
    """`digest` of the payload rebuilt from the columns, wrapped in _StoredDiffers when the
    row's stored payload (which the fast path hashes) is other bytes; None if it cannot be
    built."""
    if payload is None:
        return None
    if stored is not None and bytes(stored) != payload:
        return _StoredDiffers(digest(payload))
    return digest(payload)


def _pg_hashed(
    chunk_size: int, digest: Callable[[bytes], Any], after_id: int = 0
) -> Generator[list[HashedRow], None, None]:
    loads, encode = json.loads, canonical_json_of_loaded
    connection.ensure_connection()
    batches = _prefetched(_pg_batches(connection.connection, chunk_size, after_id))
    # Raw psycopg errors become Django's (DatabaseError and kin), as through a Django cursor.
    with contextlib.closing(batches) as rows, connection.wrap_database_errors:
        for batch in rows:
            yield [
                (pk, prev, row_hash, _checked_digest(
                    None if head is None or tail is None
                    else (head + encode(loads(data)) + tail).encode(), stored, digest))
                for pk, prev, row_hash, head, data, tail, stored in batch
            ]  # fmt: skip


def _pg_batches(
    raw_connection: Any, chunk_size: int, after_id: int = 0
) -> Iterator[list[tuple[Any, ...]]]:
    # The raw psycopg connection, not Django's wrapper: the prefetch thread reads through
    # it (Django's connections are per thread), and it is the caller's own connection, so
    # a verification inside a transaction sees that transaction's rows.
    last_id = after_id
    while True:
        with raw_connection.cursor() as cursor:
            cursor.execute(_PG_PAYLOAD_SQL, [last_id, chunk_size])
            rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        last_id = rows[-1][0]


def _orm_hashed(
    chunk_size: int, digest: Callable[[bytes], Any], after_id: int = 0
) -> Generator[list[HashedRow], None, None]:
    """Other databases (the embedded SQLite): model values through row_payload itself."""
    last_id = after_id
    while True:
        rows = list(
            AuditEvent.objects.filter(id__gt=last_id)
            .order_by("id")
            .values_list(*_COLUMNS)[:chunk_size]
        )
        if not rows:
            return
        yield [(pk, prev, row_hash, _checked_digest(row_payload(
                    prev_hash=prev, event_time=when, actor_id=actor_id, actor_repr=actor_repr,
                    event_type=event_type, object_type=object_type, object_id=object_id,
                    object_repr=object_repr, data=data), stored, digest))
               for (pk, prev, row_hash, when, actor_id, actor_repr, event_type, object_type,
                    object_id, object_repr, data, stored) in rows]  # fmt: skip
        last_id = rows[-1][0]
