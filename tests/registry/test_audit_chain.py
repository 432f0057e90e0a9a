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
    row_payload,
    verify_audit_chain,
)
from tests.registry.conftest import on_postgresql

pytestmark = pytest.mark.django_db

TABLE = AuditEvent._meta.db_table


def record_events(count: int, actor: object = None) -> list[AuditEvent]:
    return [
        audit_event_record(event_type="host_check", actor=actor, data={"n": n, "note": f"#{n}"})
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
        # SQLite: the intruder drops the triggers (0006_i14b) and puts them back after.
        from importlib import import_module

        triggers = import_module("models_registry.migrations.0006_i14b_sqlite_audit_triggers")
        with connection.cursor() as cursor:
            for statement in triggers.DROP:
                cursor.execute(statement)
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                for statement in triggers.CREATE:
                    cursor.execute(statement)


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
        event_type="host_check",
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


@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {TABLE} SET event_type = 'forged' WHERE id = %s",
        f"DELETE FROM {TABLE} WHERE id = %s",
    ],
    ids=["update", "delete"],
)
def test_the_database_trigger_refuses_update_and_delete(sql: str) -> None:
    """PostgreSQL (0003) and SQLite (0006_i14b) alike."""
    event = record_events(1)[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw_sql(sql, [event.pk])
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.event_type == "host_check"
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
    assert AuditEvent.objects.get(pk=event.pk).event_type == "host_check"


# --------------------------------------------------------------------------- anchors, key


@pytest.fixture
def anchored(settings, tmp_path):
    """An anchor file outside the database, as AUDIT_ANCHOR_FILE configures it."""
    path = tmp_path / "audit-anchors.jsonl"
    settings.AUDIT_ANCHOR_FILE = str(path)
    return path


@pytest.fixture
def keyed(settings, tmp_path):
    key_file = tmp_path / "audit.key"
    key_file.write_text("a-key-that-lives-outside-the-database\n")
    settings.AUDIT_HMAC_KEY_FILE = str(key_file)
    return key_file


def committed_events(capture, count: int) -> list[AuditEvent]:
    """Events written in their own transactions, with the commit hooks run."""
    events = []
    for n in range(count):
        with capture(execute=True):
            events.append(audit_event_record(event_type="host_check", data={"n": n}))
    return events


def delete_rows(where: str, params: list[object]) -> None:
    with append_only_trigger_disabled():
        raw_sql(f"DELETE FROM {TABLE} WHERE {where}", params)


def test_each_commit_appends_the_chain_head_to_the_anchor_file(
    anchored, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        record_events(3)  # one transaction, one anchor
    events = committed_events(django_capture_on_commit_callbacks, 2)

    lines = [json.loads(line) for line in anchored.read_text().splitlines()]
    assert [line["last_id"] for line in lines] == [events[0].pk - 1, events[0].pk, events[1].pk]
    assert lines[-1]["row_hash"] == events[1].row_hash
    report = verify_audit_chain()
    assert report.ok and report.anchors_checked == 3
    # verification anchors the head too
    assert json.loads(anchored.read_text().splitlines()[-1])["last_id"] == events[1].pk


def test_deleting_the_newest_rows_fails_verification_and_names_them(
    anchored, django_capture_on_commit_callbacks
) -> None:
    events = committed_events(django_capture_on_commit_callbacks, 5)
    delete_rows("id >= %s", [events[3].pk])

    report = verify_audit_chain()

    assert not report.ok
    assert f"events #{events[3].pk} to #{events[4].pk} missing" in report.reason
    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("verify_audit_log", stdout=out)
    assert refused.value.returncode == 1
    assert "missing" in out.getvalue()


def test_deleting_every_row_fails_verification(
    anchored, django_capture_on_commit_callbacks
) -> None:
    events = committed_events(django_capture_on_commit_callbacks, 3)
    delete_rows("id > %s", [0])

    report = verify_audit_chain()

    assert not report.ok
    assert f"every event (#1 to #{events[-1].pk}) missing" in report.reason


def rewrite_chain_from(event_id: int, key: bytes | None = None) -> None:
    """What an intruder with the database does: change a row, recompute every hash after."""
    rows = list(AuditEvent.objects.order_by("id"))
    prev = GENESIS_HASH
    with append_only_trigger_disabled():
        for row in rows:
            data = {**row.data, "n": 999} if row.pk == event_id else row.data
            content = {
                "prev_hash": prev, "event_time": row.event_time, "actor_id": row.actor_id,
                "actor_repr": row.actor_repr, "event_type": row.event_type,
                "object_type": row.object_type, "object_id": row.object_id,
                "object_repr": row.object_repr, "data": data,
            }  # fmt: skip
            new_hash = compute_row_hash(**content, key=key)
            # A thorough intruder also rewrites the stored payload (the hashed bytes).
            raw_sql(
                f"UPDATE {TABLE} SET data = %s, prev_hash = %s, row_hash = %s, payload = %s "
                "WHERE id = %s",
                [json.dumps(data), prev, new_hash, row_payload(**content), row.pk],
            )
            prev = new_hash


def test_a_full_rewrite_with_recomputed_hashes_fails_against_the_anchor(
    anchored, django_capture_on_commit_callbacks
) -> None:
    events = committed_events(django_capture_on_commit_callbacks, 4)
    rewrite_chain_from(events[1].pk)
    # without the anchors the rewritten chain would look fine
    assert AuditEvent.objects.order_by("id").first().prev_hash == GENESIS_HASH

    report = verify_audit_chain()

    assert not report.ok
    assert report.first_broken_id == events[1].pk
    assert "differs from the anchor" in report.reason


def test_a_full_rewrite_fails_when_the_chain_is_keyed(keyed, settings, tmp_path) -> None:
    events = record_events(4)  # no anchor file: the key alone must catch it
    assert verify_audit_chain().ok and verify_audit_chain().keyed
    rewrite_chain_from(events[1].pk)  # recomputed without the key, which is not in the DB

    report = verify_audit_chain()

    assert not report.ok
    assert report.first_broken_id == events[0].pk
    assert "HMAC" in report.reason


def test_an_anchor_copied_from_a_host_is_checked(tmp_path) -> None:
    from models_registry.services.audit import anchor_text

    events = record_events(3)
    host_copy = tmp_path / "audit-anchor.json"
    host_copy.write_text(anchor_text() + "\n")
    delete_rows("id = %s", [events[-1].pk])

    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit_log", "--anchor", str(host_copy), stdout=out)
    assert f"events #{events[-1].pk} to #{events[-1].pk} missing" in out.getvalue()
