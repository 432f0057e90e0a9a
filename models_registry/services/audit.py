"""The hash-chained, append-only audit trail.

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

import contextlib
import enum
import hashlib
import hmac
import json
import math
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, Final, Literal, TypedDict, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from models_registry.events import event_type_checked
from models_registry.models import AuditEvent
from models_registry.services.audit_payload import WalkPosition, fast_walk

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


@dataclass(frozen=True)
class Anchor:
    """The chain head at one moment, as recorded outside the table."""

    last_id: int
    row_hash: str
    source: str = ""


# --------------------------------------------------------------------------- key, anchors


def _setting(name: str) -> str | None:
    value = getattr(settings, name, None) or os.environ.get(name)
    return str(value) if value else None


def audit_hmac_key() -> bytes | None:
    """The chain key, from a file outside the database (preferred) or the environment."""
    path = _setting("AUDIT_HMAC_KEY_FILE")
    if path:
        key = Path(path).read_bytes().strip()
        if not key:
            raise ValueError(f"AUDIT_HMAC_KEY_FILE {path} is empty")
        return key
    key_text = _setting("AUDIT_HMAC_KEY")
    return key_text.encode() if key_text else None


def audit_anchor_file() -> Path | None:
    path = _setting("AUDIT_ANCHOR_FILE")
    return Path(path) if path else None


def anchor_line(anchor: Anchor, key: bytes | None) -> str:
    """One JSON line; with a key, MAC'd so a forged anchor is refused too."""
    body = {"last_id": anchor.last_id, "row_hash": anchor.row_hash}
    document = {**body, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if key is not None:
        document["mac"] = hmac.new(key, canonical_json(body).encode(), "sha256").hexdigest()
    return canonical_json(document)


def parse_anchor_lines(
    lines: Iterable[str], *, source: str, key: bytes | None
) -> tuple[list[Anchor], list[str]]:
    """The anchors in `lines`, and a problem for each line that is not a valid anchor."""
    anchors, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
            last_id, row_hash = int(document["last_id"]), str(document["row_hash"])
        except (ValueError, KeyError, TypeError):
            problems.append(f"{source} line {number} is not an anchor")
            continue
        if key is not None:
            body = {"last_id": last_id, "row_hash": row_hash}
            mac = hmac.new(key, canonical_json(body).encode(), "sha256").hexdigest()
            if not hmac.compare_digest(mac, str(document.get("mac", ""))):
                problems.append(f"{source} line {number}: anchor MAC is wrong (forged anchor?)")
                continue
        anchors.append(Anchor(last_id, row_hash, f"{source} line {number}"))
    return anchors, problems


def chain_head() -> Anchor | None:
    row = AuditEvent.objects.order_by("-id").values_list("id", "row_hash").first()
    return Anchor(row[0], row[1]) if row else None


def anchor_append(anchor: Anchor | None = None) -> Anchor | None:
    """Append the chain head to the anchor file (O_APPEND, fsync). No file set: no-op."""
    path = audit_anchor_file()
    anchor = anchor or chain_head()
    if path is None or anchor is None:
        return anchor
    line = anchor_line(anchor, audit_hmac_key()) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return anchor


def anchor_text() -> str | None:
    """The current head as one anchor line, for the hosts' copy at each deploy."""
    anchor = chain_head()
    return anchor_line(anchor, audit_hmac_key()) if anchor else None


_last_anchored = threading.local()


def _anchor_on_commit() -> None:
    """After the transaction commits, anchor its head once, however many events it wrote
    (each event registers a callback; the ones after the first find the head anchored).
    A rolled-back transaction runs none of them."""

    def anchor() -> None:
        head = chain_head()
        if head is None or getattr(_last_anchored, "head", None) == head:
            return
        anchor_append(head)
        _last_anchored.head = head

    transaction.on_commit(anchor)


# One encoder for every call: json.dumps with options builds a new encoder each
# time, which was a large share of verifying a million rows.
_CANONICAL_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)


def canonical_json(value: Any) -> str:
    return _CANONICAL_ENCODER.encode(value)


# JSONEncoder.encode builds its C encoder again on every call, about half the cost of
# encoding a small dict; the verifier's hot loop uses one built once with the same options.
# No circular-reference check: what json.loads returns cannot be circular.
_C_CANONICAL = c_make_encoder and c_make_encoder(
    None, str, encode_basestring, None, ":", ",", True, False, True
)


def canonical_json_of_loaded(value: Any) -> str:
    """canonical_json, byte for byte, of a value json.loads returned."""
    if _C_CANONICAL is None:  # a Python without the json C accelerator
        return canonical_json(value)
    return "".join(_C_CANONICAL(value, 0))


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
        # (services/audit_payload.py) and checks them against the columns.
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


def _load_anchors(
    key: bytes | None, extra: Iterable[tuple[str, str]]
) -> tuple[list[Anchor], list[str]]:
    anchors, problems = [], []
    path = audit_anchor_file()
    sources = list(extra)
    if path is not None and path.exists():
        sources.insert(0, (str(path), path.read_text(encoding="utf-8")))
    for source, text in sources:
        found, wrong = parse_anchor_lines(text.splitlines(), source=source, key=key)
        anchors += found
        problems += wrong
    return anchors, problems


def anchors_in_conflict(anchors: Iterable[Anchor]) -> list[str]:
    """Two anchors of one event id with different hashes: one of them was forged or the
    chain was rewritten between them (the walk compares each id with one anchor only)."""
    first: dict[int, Anchor] = {}
    problems = []
    for anchor in anchors:
        seen = first.setdefault(anchor.last_id, anchor)
        if seen.row_hash != anchor.row_hash:
            problems.append(
                f"the anchors disagree on event #{anchor.last_id}: {seen.source} says "
                f"{seen.row_hash[:12]}, {anchor.source} says {anchor.row_hash[:12]} "
                "(the chain or an anchor was rewritten)"
            )
    return problems


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


_DONE = object()
_Batch = TypeVar("_Batch")


def _prefetched(batches: Iterator[_Batch]) -> Generator[_Batch, None, None]:
    """`batches`, with the next one fetched in a thread while the caller hashes this one.

    PostgreSQL formats rows in its own process and psycopg waits without the GIL, so the
    database's work and the hashing overlap. At most two batches wait besides the one in
    use. Stopping early (a broken row) stops the thread before the connection is reused.
    """
    handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                handoff.put(batch)
                if stop.is_set():
                    return
            handoff.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.put(exc)

    thread = threading.Thread(target=produce, name="audit-prefetch", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting to hand over a batch
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)
        thread.join()


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
