"""The stored payload (AuditEvent.payload) and the verification that hashes it in bulk.

The class of defect: an edit to any stored column of a row that verification does not
see. Each column of a random row is changed to a generated value, and verification must
name that row, unkeyed and keyed, whatever the batch size. And the fast path must really
be the path that does the work: a clean chain never falls back to rebuilding rows.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from models_registry.events import EventType
from models_registry.models import AuditEvent
from models_registry.services.audit import (
    audit_event_record,
    chain,
    compute_row_hash,
    row_payload,
    verify,
    verify_audit_chain,
)
from models_registry.services.audit import payload as audit_payload
from tests.registry.conftest import on_postgresql
from tests.registry.test_audit_chain import TABLE, append_only_trigger_disabled, raw_sql

pytestmark = pytest.mark.django_db

CHAIN_LENGTH = 7
HASHED_COLUMNS = (
    "event_time", "actor_id", "actor_repr", "event_type", "object_type", "object_id",
    "object_repr", "data", "prev_hash", "row_hash", "payload",
)  # fmt: skip
# PostgreSQL text cannot hold NUL; the writer never stores one either (_jsonb_safe).
TEXT = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=60)
JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**62), 2**62)
    | st.floats(allow_nan=False, allow_infinity=False) | TEXT
)  # fmt: skip
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
HEX64 = st.text("0123456789abcdef", min_size=64, max_size=64)


def use_a_key(settings: Any, tmp_path: Any) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text("a-key-that-lives-outside-the-database\n")
    settings.AUDIT_HMAC_KEY_FILE = str(key_file)


def write_chain() -> list[AuditEvent]:
    return [
        audit_event_record(event_type="host_check", data={"n": n, "note": f"#{n} ☃"})
        for n in range(CHAIN_LENGTH)
    ]


def stored(pk: int, column: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {TABLE} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def tampered_value(draw: Any, column: str, original: Any, other_user: int) -> Any:
    """A value for `column` that differs from `original`, as the database will store it."""
    if column == "event_time":
        shift = draw(st.integers(1, 10**12).map(lambda us: timedelta(microseconds=us)))
        return original + shift if draw(st.booleans()) else original - shift
    if column == "actor_id":
        return other_user if original is None else None
    if column == "data":
        value = draw(st.dictionaries(TEXT, JSON_VALUES, max_size=4))
        return json.dumps(chain._normalise_data(value))
    if column in ("prev_hash", "row_hash"):  # unique columns: no other row's hash either
        taken = set(AuditEvent.objects.values_list("prev_hash", flat=True))
        taken |= set(AuditEvent.objects.values_list("row_hash", flat=True))
        return draw(HEX64.filter(lambda h: h not in taken))
    if column == "payload":
        return draw(st.binary(max_size=300) | _one_byte_changed(bytes(original)))
    if column == "event_type":  # the database takes only catalogued types: swap for another
        return draw(st.sampled_from(EventType.values).filter(lambda kind: kind != original))
    return draw(TEXT.filter(lambda text: text != original))


def _one_byte_changed(payload: bytes) -> st.SearchStrategy[bytes]:
    """The payload with one byte changed: its prefix and suffix mostly still match."""
    return st.tuples(st.integers(0, len(payload) - 1), st.integers(1, 255)).map(
        lambda at: payload[: at[0]] + bytes([(payload[at[0]] + at[1]) % 256]) + payload[at[0] + 1 :]
    )


def _data_equal(column: str, before: Any, after: Any) -> bool:
    if column == "data":
        return json.loads(after) == (json.loads(before) if isinstance(before, str) else before)
    return bool(before == after)


@pytest.mark.parametrize("chain_key", ["unkeyed", "keyed"])
@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_changing_any_column_of_a_random_row_is_found_and_the_row_named(
    chain_key: str, data: st.DataObject, settings: Any, tmp_path: Any
) -> None:
    if chain_key == "keyed":
        use_a_key(settings, tmp_path)
    other_user = User.objects.get_or_create(username="mallory")[0].pk
    column = data.draw(st.sampled_from(HASHED_COLUMNS), label="column")
    victim_index = data.draw(st.integers(0, CHAIN_LENGTH - 1), label="victim")
    chunk_size = data.draw(st.sampled_from([1, 2, 3, 1000]), label="chunk_size")
    with transaction.atomic():
        events = write_chain()
        victim = events[victim_index]
        original = stored(victim.pk, column)
        value = tampered_value(data.draw, column, original, other_user)
        if _data_equal(column, original, value):
            transaction.set_rollback(True)
            return
        with append_only_trigger_disabled():
            raw_sql(f"UPDATE {TABLE} SET {column} = %s WHERE id = %s", [value, victim.pk])

        report = verify_audit_chain(chunk_size=chunk_size)
        transaction.set_rollback(True)

    assert not report.ok, (column, value)
    if column == "row_hash" and victim_index < CHAIN_LENGTH - 1:
        # Its own content no longer gives its hash, or (if it did) the next row's link breaks.
        assert report.first_broken_id in (victim.pk, events[victim_index + 1].pk)
    else:
        assert report.first_broken_id == victim.pk, (column, value, report)
    assert report.checked == victim_index


def test_the_writer_stores_the_bytes_it_hashed() -> None:
    event = audit_event_record(event_type="host_check", data={"b": [1.5, None], "a": "é"})
    row = AuditEvent.objects.get(pk=event.pk)
    expected = row_payload(
        prev_hash=row.prev_hash, event_time=row.event_time, actor_id=None, actor_repr="system",
        event_type="host_check", object_type="", object_id="", object_repr="", data=row.data,
    )  # fmt: skip
    assert bytes(row.payload) == expected
    assert hashlib.sha256(expected).hexdigest() == row.row_hash


@pytest.mark.skipif(not on_postgresql(), reason="the stored-payload path is PostgreSQL's")
@pytest.mark.parametrize("chain_key", ["unkeyed", "keyed"])
def test_a_clean_chain_is_verified_without_rebuilding_any_row(
    chain_key: str, monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Any
) -> None:
    if chain_key == "keyed":
        use_a_key(settings, tmp_path)
    write_chain()
    rebuilt: list[int] = []
    original = verify._walk_reference_batch

    def counted(position: Any, *args: Any) -> Any:
        rebuilt.append(position.after_id)
        return original(position, *args)

    monkeypatch.setattr(verify, "_walk_reference_batch", counted)
    report = verify_audit_chain(chunk_size=3)
    assert (report.ok, report.checked, rebuilt) == (True, CHAIN_LENGTH, [])


@pytest.mark.skipif(not on_postgresql(), reason="the stored-payload path is PostgreSQL's")
def test_after_a_doubted_batch_the_fast_path_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    events = write_chain()
    # A row written around the service (no payload) is verified from its columns.
    with append_only_trigger_disabled():
        raw_sql(f"UPDATE {TABLE} SET payload = NULL WHERE id = %s", [events[1].pk])
    rebuilt: list[int] = []
    original = verify._walk_reference_batch

    def counted(position: Any, *args: Any) -> Any:
        rebuilt.append(position.after_id)
        return original(position, *args)

    monkeypatch.setattr(verify, "_walk_reference_batch", counted)
    report = verify_audit_chain(chunk_size=2)
    assert (report.ok, report.checked) == (True, CHAIN_LENGTH)
    assert rebuilt == [0]  # only the first batch, events[0] and events[1], was rebuilt


def test_the_migration_fills_in_the_payload_of_existing_rows() -> None:
    events = write_chain()
    # Rows as they were before the payload column: written without it.
    prev = events[-1].row_hash
    fields = {
        "event_time": events[-1].event_time + timedelta(seconds=1), "actor_id": None,
        "actor_repr": 'q"uote \\ ☃', "event_type": "host_check", "object_type": "", "object_id": "",
        "object_repr": "", "data": chain._normalise_data({"x": [1e-07, 2.5, "\n"]}),
    }  # fmt: skip
    old = AuditEvent.objects.create(
        prev_hash=prev, row_hash=compute_row_hash(prev_hash=prev, **fields), **fields
    )
    with append_only_trigger_disabled():
        raw_sql(f"UPDATE {TABLE} SET payload = NULL WHERE id <= %s", [events[2].pk])
    migration = import_module("models_registry.migrations.0012_i29_audit_payload")

    class Editor:
        pass

    editor = Editor()
    editor.connection = connection  # type: ignore[attr-defined]
    migration.backfill(apps, editor)

    assert not AuditEvent.objects.filter(payload__isnull=True).exists()
    assert stored(old.pk, "payload") is not None
    assert verify_audit_chain(chunk_size=2).ok
    # and the guard is back
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        raw_sql(f"UPDATE {TABLE} SET payload = NULL WHERE id = %s", [old.pk])


# ------------------------------------------ outside a transaction: parallel connections
# A verification outside any transaction (the command's) reads the rows on one connection
# and checks them against their columns on others, all in one exported snapshot. The same
# class of defect, an edit to any stored column, must be found there too.


def spy_on_the_parallel_path(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = audit_payload._parallel_batches

    def counted(stack: Any, group: Any, after_id: int, chunk_size: int) -> Any:
        calls.append(after_id)
        return original(stack, group, after_id, chunk_size)

    monkeypatch.setattr(audit_payload, "_parallel_batches", counted)
    return calls


@pytest.mark.skipif(not on_postgresql(), reason="the parallel path is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("chain_key", ["unkeyed", "keyed"])
@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_outside_a_transaction_changing_any_column_is_found_on_the_parallel_path(
    chain_key: str,
    data: st.DataObject,
    settings: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if chain_key == "keyed":
        use_a_key(settings, tmp_path)
    other_user = User.objects.get_or_create(username="mallory")[0].pk
    events = list(AuditEvent.objects.order_by("id")) or write_chain()  # committed, kept
    column = data.draw(st.sampled_from(HASHED_COLUMNS), label="column")
    victim_index = data.draw(st.integers(0, len(events) - 1), label="victim")
    chunk_size = data.draw(st.sampled_from([1, 2, 3, 1000]), label="chunk_size")
    victim = events[victim_index]
    original = stored(victim.pk, column)
    value = tampered_value(data.draw, column, original, other_user)
    if _data_equal(column, original, value):
        return
    if column == "data" and not isinstance(original, str):
        original = json.dumps(original)
    if isinstance(original, memoryview):
        original = bytes(original)
    calls = spy_on_the_parallel_path(monkeypatch)
    with append_only_trigger_disabled():
        raw_sql(f"UPDATE {TABLE} SET {column} = %s WHERE id = %s", [value, victim.pk])
    try:
        assert not connection.in_atomic_block and connection.get_autocommit()
        report = verify_audit_chain(chunk_size=chunk_size)
    finally:
        with append_only_trigger_disabled():
            raw_sql(f"UPDATE {TABLE} SET {column} = %s WHERE id = %s", [original, victim.pk])

    assert calls, "the parallel path was not taken"
    assert not report.ok, (column, value)
    if column == "row_hash" and victim_index < len(events) - 1:
        assert report.first_broken_id in (victim.pk, events[victim_index + 1].pk)
    else:
        assert report.first_broken_id == victim.pk, (column, value, report)
    assert report.checked == victim_index
    assert verify_audit_chain(chunk_size=chunk_size).ok  # put back: verifies again


@pytest.mark.skipif(not on_postgresql(), reason="the parallel path is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_clean_chain_verifies_on_the_parallel_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_chain()
    calls = spy_on_the_parallel_path(monkeypatch)
    rebuilt: list[int] = []
    original = verify._walk_reference_batch

    def counted(position: Any, *args: Any) -> Any:
        rebuilt.append(position.after_id)
        return original(position, *args)

    monkeypatch.setattr(verify, "_walk_reference_batch", counted)
    report = verify_audit_chain(chunk_size=3)
    assert (report.ok, report.checked, rebuilt, calls) == (True, CHAIN_LENGTH, [], [0])


@pytest.mark.skipif(not on_postgresql(), reason="the parallel path is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_check_that_covered_other_rows_than_were_read_is_a_doubted_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check must cover exactly the rows hashed: if the two halves ever disagree on
    which rows a batch holds (here the check leaves one out, the links still hold), that
    batch is verified row by row instead."""
    events = write_chain()
    skipped = events[4].pk
    monkeypatch.setattr(
        audit_payload,
        "CHECK_BATCH_SQL",
        audit_payload.CHECK_BATCH_SQL.replace(
            "WHERE b.id > %(after)s", f"WHERE b.id > %(after)s AND b.id <> {skipped}"
        ),
    )
    rebuilt: list[int] = []
    original = verify._walk_reference_batch

    def counted(position: Any, *args: Any) -> Any:
        rebuilt.append(position.after_id)
        return original(position, *args)

    monkeypatch.setattr(verify, "_walk_reference_batch", counted)
    report = verify_audit_chain(chunk_size=3)
    assert (report.ok, report.checked) == (True, CHAIN_LENGTH)
    assert rebuilt == [events[2].pk]  # the batch of events 3 to 5, doubted, was rebuilt


@pytest.mark.skipif(not on_postgresql(), reason="the parallel path is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_without_extra_connections_the_one_connection_path_verifies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No free connection slot (or a server that cannot share a snapshot): slower, but
    the same verification, and a tampered row is still named."""
    import psycopg

    events = write_chain()
    calls = spy_on_the_parallel_path(monkeypatch)

    def refused(stack: Any) -> Any:
        raise psycopg.OperationalError("sorry, too many clients already")

    monkeypatch.setattr(audit_payload, "_open_raw", refused)
    assert verify_audit_chain(chunk_size=3).ok
    with append_only_trigger_disabled():
        raw_sql(f"UPDATE {TABLE} SET actor_repr = 'mallory' WHERE id = %s", [events[3].pk])
    report = verify_audit_chain(chunk_size=3)
    assert (report.ok, report.first_broken_id, calls) == (False, events[3].pk, [])


def backends_still_open(pids: list[int], within: float = 10.0) -> set[int]:
    """Those of `pids` whose backend is still there after `within` seconds: a backend ends
    a moment after its client closes, so this waits for that, never for less."""
    import time

    deadline = time.monotonic() + within
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
            alive = {row[0] for row in cursor.fetchall()}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


@pytest.mark.skipif(not on_postgresql(), reason="the parallel path is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_the_extra_connections_are_closed_after_a_clean_a_broken_and_a_failed_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = write_chain()
    opened: list[int] = []
    original = audit_payload._open_raw

    def recorded(stack: Any) -> Any:
        raw = original(stack)
        opened.append(raw.info.backend_pid)
        return raw

    monkeypatch.setattr(audit_payload, "_open_raw", recorded)
    assert verify_audit_chain(chunk_size=2).ok
    with append_only_trigger_disabled():
        raw_sql(f"UPDATE {TABLE} SET object_repr = 'x' WHERE id = %s", [events[2].pk])
    assert verify_audit_chain(chunk_size=2).first_broken_id == events[2].pk
    monkeypatch.setattr(
        audit_payload, "CHECK_BATCH_SQL", "SELECT no_such_column FROM auditevent WHERE %(last)s > 0"
    )
    with pytest.raises(Exception, match="auditevent"):
        verify_audit_chain(chunk_size=2)
    assert len(opened) >= 3 * (1 + audit_payload.CHECKERS)
    assert backends_still_open(opened) == set()
