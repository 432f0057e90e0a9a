"""verify_audit_chain's fast reading path: the bytes it hashes are the writer's, on awkward
rows too, and a broken row is named wherever it falls against the batch edges."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from datetime import UTC, datetime

import pytest
from django.db import ProgrammingError as DjangoProgrammingError
from django.db import connection, transaction

from models_registry.models import AuditEvent
from models_registry.services.audit import (
    GENESIS_HASH,
    audit_event_record,
    canonical,
    chain,
    compute_row_hash,
    prefetch,
    row_payload,
    verify,
    verify_audit_chain,
)
from models_registry.services.audit import payload as audit_payload
from tests.registry.conftest import on_postgresql
from tests.registry.test_audit_chain import TABLE, append_only_trigger_disabled, raw_sql

pytestmark = pytest.mark.django_db

AWKWARD_TEXT = 'q"uote \\back\\slash\n\r\t\b\f \x01\x1f\x7f é ☃ 😀 \u2028 </script>'
AWKWARD_DATA = {
    "unicode": "Grüße ☃ 😀 \u2028",
    "floats": [0.1, 1e-07, 2.5e300, -1.5, 1e20, -0.0, 3.0],
    "nested": {"z": {"b": [1, {"y": None, "a": True}], "a": False}, "A": "", "ä": 1},
    "none": None,
    "big": 123456789012345678901234567890,
    "neg": -(2**63),
    "escapes": AWKWARD_TEXT,
    "nan": float("nan"),
    "nul": "a\x00b",
}


def awkward_rows() -> list[AuditEvent]:
    """Rows through the writer, then ones whose columns the writer never produces (odd
    strings, an early year, an actor id) appended in the writer's own chain form."""
    events = [audit_event_record(event_type="host_check", data=AWKWARD_DATA)]
    prev = events[-1].row_hash
    odd_times = [datetime(5, 3, 4, 1, 2, 3, 4, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC)]
    for n, when in enumerate(odd_times):
        fields = {
            "event_time": when, "actor_id": None, "actor_repr": AWKWARD_TEXT,
            "event_type": ("host_check", "deployment_step")[n], "object_type": AWKWARD_TEXT[:60],
            "object_id": "😀" * n, "object_repr": AWKWARD_TEXT.replace("\x00", ""),
            "data": chain._normalise_data({"n": n, **AWKWARD_DATA}),
        }  # fmt: skip
        row_hash = compute_row_hash(prev_hash=prev, **fields)
        events.append(AuditEvent.objects.create(prev_hash=prev, row_hash=row_hash, **fields))
        prev = row_hash
    return events


def payloads(chunk_size: int) -> list[verify.HashedRow]:
    """The bytes the fast path hashes (its digest, here, is the identity)."""
    with contextlib.closing(verify._iter_hashed(chunk_size, lambda p: p)) as batches:
        return [row for batch in batches for row in batch]


def test_the_fast_path_hashes_exactly_the_bytes_the_writer_hashed() -> None:
    events = awkward_rows()
    written = {
        e.pk: row_payload(
            prev_hash=e.prev_hash, event_time=e.event_time, actor_id=e.actor_id,
            actor_repr=e.actor_repr, event_type=e.event_type, object_type=e.object_type,
            object_id=e.object_id, object_repr=e.object_repr, data=e.data,
        )
        for e in AuditEvent.objects.filter(pk__in=[e.pk for e in events])
    }  # fmt: skip
    read = {pk: payload for pk, _prev, _hash, payload in payloads(chunk_size=2)}
    assert read == written
    assert json.loads(read[events[1].pk])["event_time"] == "0005-03-04T01:02:03.000004+00:00"
    assert verify_audit_chain(chunk_size=2).ok


def test_the_writer_hash_is_the_digest_of_row_payload() -> None:
    event = audit_event_record(event_type="host_check", data={"b": 1, "a": [1.5, None]})
    stored = AuditEvent.objects.get(pk=event.pk)
    payload = row_payload(
        prev_hash=GENESIS_HASH, event_time=stored.event_time, actor_id=None,
        actor_repr="system", event_type="host_check", object_type="", object_id="", object_repr="",
        data=stored.data,
    )  # fmt: skip
    assert payload.startswith(b'{"actor_id":null,"actor_repr":"system","data":{"a":[1.5,null]')
    assert hashlib.sha256(payload).hexdigest() == stored.row_hash


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 5])
@pytest.mark.parametrize("victim_index", [0, 3, 4, 9])
def test_a_forged_row_is_named_wherever_it_falls_against_the_batch_edges(
    chunk_size: int, victim_index: int
) -> None:
    events = [audit_event_record(event_type="host_check", data={"n": n}) for n in range(10)]
    victim = events[victim_index]
    with append_only_trigger_disabled():
        raw_sql(f"UPDATE {TABLE} SET data = %s WHERE id = %s", ['{"n": -1}', victim.pk])

    report = verify_audit_chain(chunk_size=chunk_size)

    assert (report.ok, report.first_broken_id, report.checked) == (False, victim.pk, victim_index)
    assert "content" in report.reason


@pytest.mark.parametrize("chunk_size", [2, 3])
def test_a_deleted_row_at_a_batch_edge_breaks_the_link_of_the_next(chunk_size: int) -> None:
    events = [audit_event_record(event_type="host_check", data={"n": n}) for n in range(7)]
    with append_only_trigger_disabled():
        raw_sql(f"DELETE FROM {TABLE} WHERE id = %s", [events[2].pk])

    report = verify_audit_chain(chunk_size=chunk_size)

    assert (report.first_broken_id, report.checked) == (events[3].pk, 2)
    assert "prev_hash" in report.reason


def test_an_early_stop_leaves_the_connection_usable() -> None:
    events = [audit_event_record(event_type="host_check", data={"n": n}) for n in range(6)]
    with append_only_trigger_disabled():
        raw_sql(f"UPDATE {TABLE} SET actor_repr = 'mallory' WHERE id = %s", [events[0].pk])
    assert verify_audit_chain(chunk_size=1).first_broken_id == events[0].pk
    # the prefetch thread is gone and the connection answers again
    assert not [t for t in threading.enumerate() if t.name == "audit-prefetch"]
    assert AuditEvent.objects.count() == 6


def test_a_read_error_in_the_prefetch_thread_is_raised_to_the_caller() -> None:
    def failing():
        yield [1]
        raise RuntimeError("connection lost")

    batches = prefetch._prefetched(failing())
    assert next(batches) == [1]
    with pytest.raises(RuntimeError, match="connection lost"):
        next(batches)


@pytest.mark.skipif(not on_postgresql(), reason="PostgreSQL accepts an infinite timestamp")
def test_an_event_time_postgresql_cannot_format_names_the_row() -> None:
    events = [audit_event_record(event_type="host_check", data={}) for _ in range(3)]
    with append_only_trigger_disabled():
        raw_sql(f"UPDATE {TABLE} SET event_time = 'infinity' WHERE id = %s", [events[1].pk])

    report = verify_audit_chain()

    assert (report.ok, report.first_broken_id) == (False, events[1].pk)
    assert "canonical form" in report.reason
    assert connection.vendor == "postgresql"


@pytest.mark.skipif(not on_postgresql(), reason="the raw-connection path is PostgreSQL's")
def test_a_database_error_while_reading_is_raised_as_djangos(monkeypatch) -> None:
    audit_event_record(event_type="host_check", data={})
    monkeypatch.setattr(
        verify, "_PG_PAYLOAD_SQL", "SELECT no_such_column FROM auditevent WHERE id > %s LIMIT %s"
    )
    # The stored-payload path reads first; it raises the same way.
    monkeypatch.setattr(
        audit_payload, "FAST_BATCH_SQL", "SELECT no_such_column FROM auditevent WHERE %(n)s > 0"
    )
    with pytest.raises(DjangoProgrammingError, match="auditevent"), transaction.atomic():
        verify_audit_chain()


@pytest.mark.parametrize(
    "value",
    [AWKWARD_DATA, {"b": {"z": 1, "a": [None, 1.5e-7]}}, [1, "x"], "☃\n", 2.5, None, {}, []],
    ids=["awkward", "nested", "list", "str", "float", "null", "empty-dict", "empty-list"],
)
def test_the_prebuilt_encoder_writes_what_canonical_json_writes(value: object) -> None:
    assert canonical._C_CANONICAL is not None  # otherwise this would compare the function to itself
    assert canonical.canonical_json_of_loaded(value) == canonical.canonical_json(value)
