"""The audit trail: hash-chained, append-only, and tampering is found and named."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from models_registry.models import AuditEvent, DeletionRefused, RegistryError
from models_registry.services.audit import (
    GENESIS_HASH,
    audit_event_record,
    compute_row_hash,
    verify_audit_chain,
)
from tests.registry.conftest import on_postgresql, requires_postgresql

pytestmark = pytest.mark.django_db

TABLE = AuditEvent._meta.db_table


def record_events(count: int, actor: object = None) -> list[AuditEvent]:
    return [
        audit_event_record(event_type="test_event", actor=actor, data={"n": n, "note": f"#{n}"})
        for n in range(count)
    ]


@contextmanager
def append_only_trigger_disabled() -> Iterator[None]:
    """What an intruder with database access does to edit the trail quietly."""
    if on_postgresql():
        with connection.cursor() as cursor:
            # Django's foreign keys are deferred; ALTER TABLE needs none pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    else:
        yield


def raw_sql(sql: str, params: list[object]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_events_link_to_the_previous_row_hash(engineer: object) -> None:
    events = record_events(3, actor=engineer)
    assert events[0].prev_hash == GENESIS_HASH
    assert events[1].prev_hash == events[0].row_hash
    assert events[2].prev_hash == events[1].row_hash
    stored = AuditEvent.objects.get(pk=events[2].pk)
    assert stored.actor_id == engineer.pk
    assert stored.actor_repr == engineer.username
    assert stored.row_hash == compute_row_hash(
        prev_hash=stored.prev_hash,
        event_time=stored.event_time,
        actor_id=stored.actor_id,
        actor_repr=stored.actor_repr,
        event_type=stored.event_type,
        object_type=stored.object_type,
        object_id=stored.object_id,
        object_repr=stored.object_repr,
        data=stored.data,
    )


def test_a_clean_chain_verifies() -> None:
    record_events(5)
    report = verify_audit_chain(chunk_size=2)  # several chunks: the link crosses chunk borders
    assert report.ok, report
    assert report.checked == 5
    assert report.first_broken_id is None


def test_data_the_database_would_alter_still_verifies() -> None:
    # jsonb turns 1e20 into an integer and -0.0 into 0 and refuses NaN and NUL.
    event = audit_event_record(
        event_type="odd_numbers",
        data={"big": 1e20, "negzero": -0.0, "nan": float("nan"), "nul": "a\x00b", "f": 0.1},
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.data["nan"] == "nan"
    assert stored.data["f"] == 0.1
    assert verify_audit_chain().ok


def test_an_edit_in_the_database_is_found_and_named() -> None:
    events = record_events(5)
    victim = events[2]
    with append_only_trigger_disabled():
        raw_sql(
            f"UPDATE {TABLE} SET data = %s WHERE id = %s",
            [json.dumps({"n": 999, "note": "forged"}), victim.pk],
        )
    report = verify_audit_chain()
    assert not report.ok
    assert report.first_broken_id == victim.pk
    assert report.checked == 2
    assert "content" in report.reason


def test_a_deleted_middle_row_is_found() -> None:
    events = record_events(5)
    with append_only_trigger_disabled():
        raw_sql(f"DELETE FROM {TABLE} WHERE id = %s", [events[2].pk])
    report = verify_audit_chain()
    assert not report.ok
    # The row after the gap no longer links to its predecessor.
    assert report.first_broken_id == events[3].pk
    assert "prev_hash" in report.reason


def test_verify_audit_log_names_the_broken_row_and_exits_1() -> None:
    events = record_events(4)
    with append_only_trigger_disabled():
        raw_sql(f"UPDATE {TABLE} SET actor_repr = %s WHERE id = %s", ["mallory", events[1].pk])
    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("verify_audit_log", stdout=out)
    assert refused.value.returncode == 1
    assert f"#{events[1].pk}" in out.getvalue()
    assert f"#{events[1].pk}" in str(refused.value)

    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit_log", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["ok"] is False
    assert report["first_broken_id"] == events[1].pk


def test_verify_audit_log_on_a_clean_chain_says_ok() -> None:
    record_events(3)
    out = io.StringIO()
    call_command("verify_audit_log", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report == {**report, "ok": True, "checked": 3, "first_broken_id": None}


@requires_postgresql
@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {TABLE} SET event_type = 'forged' WHERE id = %s",
        f"DELETE FROM {TABLE} WHERE id = %s",
    ],
    ids=["update", "delete"],
)
def test_the_postgresql_trigger_refuses_update_and_delete(sql: str) -> None:
    event = record_events(1)[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw_sql(sql, [event.pk])
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.event_type == "test_event"
    assert verify_audit_chain().ok


def test_the_orm_refuses_to_change_or_delete_events() -> None:
    event = record_events(1)[0]
    event.event_type = "forged"
    with pytest.raises(RegistryError, match="append-only"):
        event.save()
    with pytest.raises(RegistryError, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).update(event_type="forged")
    with pytest.raises(DeletionRefused):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(DeletionRefused):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).event_type == "test_event"
