"""Verifying the audit chain from the bytes each row stores (AuditEvent.payload).

The writer (services.audit.chain.audit_event_record) stores, with each row, the exact bytes its
hash covers: `row_payload`, the one definition. Verifying then rebuilds no JSON per row.
On PostgreSQL one query per batch checks, in the database's own process, the payload
against the row's columns: the bytes before and after `data` are what the columns give
(the same expressions as audit.verify._PG_PAYLOAD_SQL, held byte-identical to row_payload by
tests/registry/test_audit_verify_fast.py), and the `data` in between, read as jsonb,
prints exactly as the stored `data` column prints. Python then checks, per batch, the
links (prev_hash against the row before), the anchors, and each payload's hash (sha256,
or the HMAC, whose key never goes to the database) while the next batch is read.
Outside a transaction (the command's case) that query is split, on new connections that
share one exported snapshot: one reads the rows to hash, two others check each batch it
found against the rows' columns (two thirds of the database's work), all at once while
Python hashes (1,000,000 events on 2 cores: 4.8 s with one connection, 3.9 s with a reader
and one checker, less with two checkers; the bench prints the figure beside its floor).
Inside a transaction only the caller's connection sees its own rows: the one query.

Any doubt about a batch (a failed check, a payload PostgreSQL cannot read, a row written
without a payload) ends the fast walk at that batch; audit.verify._walk checks that batch row by
row on the reference path, which names the broken row and why, and the fast walk resumes
after it. A tampered column, payload or hash is found either way, and always reported as
the reference path reports it (tests/registry/test_audit_payload.py changes each column of
a random row).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import logging
import queue
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connection

from models_registry.services.audit.prefetch import _prefetched

log = logging.getLogger(__name__)

# The payload minus `data`, from the columns: keys in sorted order, strings through to_json
# (json's escaping with ensure_ascii=False), the time as isoformat(timespec="microseconds").
_HEAD_SQL = (
    """'{"actor_id":' || coalesce(b.actor_id::text, 'null') """
    """|| ',"actor_repr":' || to_json(b.actor_repr)::text || ',"data":'"""
)
_TAIL_SQL = (
    """',"event_time":"' """
    """|| to_char(b.event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') """
    """|| '","event_type":' || to_json(b.event_type)::text """
    """|| ',"object_id":' || to_json(b.object_id)::text """
    """|| ',"object_repr":' || to_json(b.object_repr)::text """
    """|| ',"object_type":' || to_json(b.object_type)::text """
    """|| ',"prev_hash":' || to_json(b.prev_hash)::text || '}'"""
)
# Whether every row of a batch agrees with its payload: the bytes before and after `data`
# are what the columns give, and `data` in between, read as jsonb, prints exactly as the
# stored `data` column prints. `data` is only read as jsonb once the bytes around it match
# (a CASE is evaluated in order); a payload that is not UTF-8 JSON there still raises, and
# that batch then goes to the reference path.
_AGREE_SQL = """coalesce(bool_and(
         payload IS NOT NULL
         AND CASE WHEN length(payload) >= length(head) + length(tail)
                   AND substr(payload, 1, length(head)) = head
                   AND substr(payload, length(payload) - length(tail) + 1) = tail
              THEN convert_from(substr(payload, length(head) + 1,
                                       length(payload) - length(head) - length(tail)),
                                'UTF8')::jsonb::text = data::text
              ELSE false END), true)"""
# The batch after %(after)s: %(n)s rows in id order, with the payload's expected head and
# tail (the aggregates read the ordered LIMIT subquery as it comes).
_BATCH_COLUMNS_SQL = f"""b.id, b.prev_hash, b.row_hash, b.payload, b.data,
         convert_to({_HEAD_SQL}, 'UTF8') AS head, convert_to({_TAIL_SQL}, 'UTF8') AS tail"""
_BATCH_SQL = f"""(
  SELECT {_BATCH_COLUMNS_SQL}
  FROM models_registry_auditevent b WHERE b.id > %(after)s ORDER BY b.id LIMIT %(n)s
) c"""  # noqa: S608 - constant SQL fragments; every value is bound
_LISTS_SQL = "array_agg(id), array_agg(prev_hash), array_agg(row_hash), array_agg(payload)"
# Per batch, one row: the ids, links, hashes and payloads of the batch in id order, and
# whether every row's columns agree with its payload. Links, anchors and hashes are checked
# in Python, where they are list comparisons and hashlib calls (several times faster per
# row than PostgreSQL's sha256()), while the database reads the next batch.
FAST_BATCH_SQL = f"SELECT {_LISTS_SQL}, {_AGREE_SQL} FROM {_BATCH_SQL}"  # noqa: S608

# The same batch split, for connections that share one snapshot (_parallel_batches): the
# rows to hash (cheap for the database), and the check of the columns against the payloads
# (most of the database's work: formatting the columns, reading `data` as jsonb), of the
# rows the reader found between two ids, on other connections, at the same time.
READ_BATCH_SQL = f"""SELECT {_LISTS_SQL} FROM (
  SELECT id, prev_hash, row_hash, payload FROM models_registry_auditevent
  WHERE id > %(after)s ORDER BY id LIMIT %(n)s
) c"""  # noqa: S608 - constant SQL; every value is bound
CHECK_BATCH_SQL = f"""SELECT max(id), count(*), {_AGREE_SQL} FROM (
  SELECT {_BATCH_COLUMNS_SQL}
  FROM models_registry_auditevent b WHERE b.id > %(after)s AND b.id <= %(last)s
  OFFSET 0
) c"""  # noqa: S608 - constant SQL fragments; every value is bound
# (OFFSET 0 keeps the subquery a subquery: flattened into the aggregate, each use of `head`
# and `tail` would build them again, three times the work.)
# Connections checking at once besides the reader: the check costs the database about
# 1.4 times what reading and hashing cost together, so two keep pace with the reader.
CHECKERS = 2

# What reading a payload can raise in PostgreSQL: not UTF-8, not JSON where `data` is.
_UNREADABLE_PAYLOAD = (psycopg.DataError,)  # SQLSTATE class 22, every subclass


@dataclass(frozen=True)
class WalkPosition:
    """How far the chain is verified: every row up to `after_id`, `checked` rows in all,
    and the row_hash the next row must link to."""

    after_id: int
    prev_hash: str
    checked: int
    done: bool = False


def fast_walk(
    position: WalkPosition,
    *,
    chunk_size: int,
    digest: Callable[[bytes], str],
    anchors: Mapping[int, str],
) -> WalkPosition:
    """Verify whole batches from `position` on PostgreSQL while every check passes.

    `digest` is the row-hash function (sha256, or the HMAC, whose key never goes to the
    database). The next batch is read in a thread while this one is hashed. Returns the
    position after the last batch that verified: `done` when the chain ended there,
    otherwise the next batch needs the reference path. Other databases: the position,
    unchanged.
    """
    if connection.vendor != "postgresql":
        return position
    connection.ensure_connection()
    anchor_ids = sorted(anchors)
    with contextlib.ExitStack() as stack:
        stack.enter_context(connection.wrap_database_errors)
        # Inside a transaction only this connection sees the caller's own rows.
        group = None if _in_a_transaction() else _snapshot_connections(stack, 1 + CHECKERS)
        rows: Iterator[tuple[Any, ...] | None]
        if group is None:
            batches = _batches(connection.connection, position.after_id, chunk_size)
            rows = stack.enter_context(contextlib.closing(_prefetched(batches)))
        else:
            rows = _parallel_batches(stack, group, position.after_id, chunk_size)
        for row in rows:
            if row is None:
                return position
            ids, prevs, hashes, payloads, columns_agree = row
            if not ids:
                return WalkPosition(position.after_id, position.prev_hash, position.checked, True)
            if not (
                columns_agree
                and prevs[0] == position.prev_hash
                and prevs[1:] == hashes[:-1]
                and _anchors_agree(ids, hashes, anchor_ids, anchors)
                and list(map(digest, payloads)) == hashes
            ):
                return position
            position = WalkPosition(ids[-1], hashes[-1], position.checked + len(ids))
    return position


def _anchors_agree(
    ids: list[int], hashes: list[str], anchor_ids: list[int], anchors: Mapping[int, str]
) -> bool:
    """Every anchor that falls on a row of the batch has that row's hash."""
    first = bisect.bisect_left(anchor_ids, ids[0])
    last = bisect.bisect_right(anchor_ids, ids[-1])
    for anchor_id in anchor_ids[first:last]:
        at = bisect.bisect_left(ids, anchor_id)
        if at < len(ids) and ids[at] == anchor_id and hashes[at] != anchors[anchor_id]:
            return False
    return True


def _in_a_transaction() -> bool:
    return connection.in_atomic_block or not connection.get_autocommit()


def _parallel_batches(
    stack: contextlib.ExitStack, connections: list[Any], after_id: int, chunk_size: int
) -> Iterator[tuple[Any, ...] | None]:
    """FAST_BATCH_SQL's rows, from new connections in one snapshot: the first reads the rows
    to hash (READ_BATCH_SQL, one batch ahead, in a thread), the others check each batch the
    reader found, between its bounds, against the rows' columns (CHECK_BATCH_SQL), up to
    one batch each at a time, while this thread hashes an earlier batch. The check must
    cover exactly the rows read: same snapshot, same bounds, and its last id and count are
    compared with the batch's; anything else is a doubted batch. Batches come out in id
    order."""
    reader, checkers = connections[0], connections[1:]
    idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for checker in checkers:
        idle.put(checker)

    def check(after: int, last: int) -> tuple[Any, ...] | None:
        raw = idle.get()
        try:
            return _fetch_batch(raw, CHECK_BATCH_SQL, {"after": after, "last": last})
        finally:
            idle.put(raw)

    reads = stack.enter_context(
        contextlib.closing(_prefetched(_batches(reader, after_id, chunk_size, READ_BATCH_SQL)))
    )
    pool = ThreadPoolExecutor(max_workers=len(checkers), thread_name_prefix="audit-check")
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)
    pending: collections.deque[tuple[tuple[Any, ...], Future[tuple[Any, ...] | None]]] = (
        collections.deque()
    )
    last_id = after_id
    for read in reads:
        ids = [] if read is None else (read[0] or [])
        if read is not None and ids:
            pending.append((read, pool.submit(check, last_id, ids[-1])))
            last_id = ids[-1]
        while pending and (len(pending) > len(checkers) or not ids):
            batch, checked = pending.popleft()
            result = checked.result()
            if result is None:
                yield None
                return
            yield _joined(batch, result)
        if not ids:
            yield None if read is None else ([], [], [], [], True)
            return


def _joined(read: tuple[Any, ...], check: tuple[Any, ...]) -> tuple[Any, ...]:
    """A batch as FAST_BATCH_SQL gives it, from its read and its check."""
    ids = read[0]
    last_id, count, columns_agree = check
    same_rows = (last_id, count) == (ids[-1], len(ids))
    return (ids, read[1], read[2], read[3], bool(columns_agree) and same_rows)


def _snapshot_connections(stack: contextlib.ExitStack, count: int) -> list[Any] | None:
    """`count` new read-only connections (closed with `stack`) that see one snapshot: the
    others import the snapshot the first exports, as pg_dump's parallel workers do. None
    when they cannot be had (no free connection slots, a server that cannot share
    snapshots): verifying then takes the one-connection path, slower, never weaker."""
    try:
        first = _open_raw(stack)
        with psycopg.Cursor(first) as cursor:  # opens the first one's transaction
            cursor.execute("SELECT pg_export_snapshot()")
            row = cursor.fetchone()
        assert row is not None
        others = [_open_raw(stack) for _ in range(count - 1)]
        for other in others:
            with psycopg.ClientCursor(other) as cursor:  # SET takes no bound parameters
                cursor.execute("SET TRANSACTION SNAPSHOT %s", [row[0]])
    except psycopg.Error as error:
        log.warning("audit verify: one connection instead of %d (%s)", count, error)
        return None
    return [first, *others]


def _open_raw(stack: contextlib.ExitStack) -> Any:
    """A new raw connection with Django's parameters, in a read-only repeatable-read
    transaction from its first statement."""
    raw = stack.enter_context(
        contextlib.closing(psycopg.connect(**connection.get_connection_params()))
    )
    raw.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    raw.read_only = True
    return raw


def _batches(
    raw: Any, after_id: int, chunk_size: int, sql: str | None = None
) -> Iterator[tuple[Any, ...] | None]:
    """Each batch's row from `after_id` on, following the batches by their own last id, so
    the reader never waits for the hashing. Ends after an empty batch, or one PostgreSQL
    could not read (None). `sql` (FAST_BATCH_SQL by default) gives the batch's ids first."""
    while True:
        row = _fetch_batch(raw, sql or FAST_BATCH_SQL, {"after": after_id, "n": chunk_size})
        yield row
        if row is None or not row[0]:
            return
        after_id = row[0][-1]


def _fetch_batch(raw: Any, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The batch's summary row; None when PostgreSQL cannot read a payload in it. Inside
    the caller's transaction a savepoint keeps that transaction usable after such an
    error; in autocommit a failed statement leaves nothing behind."""
    guarded = not raw.autocommit
    # A server-side-binding cursor (Django's raw connection makes client-side ones), for
    # binary results.
    with psycopg.Cursor(raw) as cursor:
        if guarded:
            cursor.execute("SAVEPOINT audit_fast_batch")
        try:
            # Binary: the arrays of hashes and payloads arrive without text escaping.
            cursor.execute(sql, params, binary=True)
            row = cursor.fetchone()
        except _UNREADABLE_PAYLOAD:
            if guarded:
                cursor.execute("ROLLBACK TO SAVEPOINT audit_fast_batch")
            return None
        if guarded:
            cursor.execute("RELEASE SAVEPOINT audit_fast_batch")
    assert row is not None  # an aggregate over any batch, even an empty one, is one row
    return tuple(row)
