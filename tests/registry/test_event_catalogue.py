"""Every audit event type is a member of the catalogue (models_registry/events.py).

The class: an event type the catalogue does not list, however it reaches the table. Its
members: a literal or a name in the source that is not catalogued, a type built from
pieces of strings (an f-string, ``+``, ``%``, ``.format``), a call of the writer with an
unknown type, a raw INSERT past the writer, and a database check that drifted from the
catalogue. Each is refused here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse

from models_registry.events import EventType, UnknownEventType
from models_registry.models import AuditEvent
from models_registry.services.audit import GENESIS_HASH, audit_event_record
from models_registry.services.model_versions import model_version_register

ROOT = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = ("models_registry", "deployment", "tradebot")
# Calls whose first positional argument is an event type.
EVENT_TYPE_POSITIONAL = {"audited_refusal", "_record_refusal"}


def _source_files() -> list[Path]:
    return [
        path
        for package in SOURCE_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _event_type_expressions(tree: ast.AST) -> list[ast.expr]:
    """Every expression the source passes or stores as an event type."""
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found += [k.value for k in node.keywords if k.arg == "event_type"]
            if _call_name(node) in EVENT_TYPE_POSITIONAL and node.args:
                found.append(node.args[0])
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = [t.id for t in targets if isinstance(t, ast.Name)]
            if any(name.endswith("_EVENT") for name in named) and node.value is not None:
                found.append(node.value)
    return found


def _problem(expr: ast.expr) -> str | None:
    """Why ``expr`` is not an acceptable event type, or None if it is."""
    if isinstance(expr, ast.JoinedStr | ast.BinOp):
        return "built from pieces of strings"
    if isinstance(expr, ast.Call) and _call_name(expr) in {"format", "join", "replace"}:
        return "built from pieces of strings"
    if isinstance(expr, ast.Constant):
        if isinstance(expr.value, str) and expr.value not in EventType.values:
            return f"{expr.value!r} is not in the catalogue"
        return None
    if isinstance(expr, ast.Attribute) and getattr(expr.value, "id", "") == "EventType":
        return None if hasattr(EventType, expr.attr) else f"EventType.{expr.attr} does not exist"
    return None  # a name or a parameter passed through: its literal is checked where it is


def test_no_source_writes_an_uncatalogued_or_built_event_type() -> None:
    problems = []
    scanned = 0
    for path in _source_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for expr in _event_type_expressions(tree):
            scanned += 1
            why = _problem(expr)
            if why:
                problems.append(f"{path.relative_to(ROOT)}:{expr.lineno}: {why}")
    assert scanned > 40, "the scan found too few event types: it no longer reads the source"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "source",
    [
        'audit_event_record(event_type=f"{kind}_run_started")',
        'audit_event_record(event_type=kind + "_finished")',
        'audit_event_record(event_type="{}_refused".format(kind))',
        'audit_event_record(event_type="made_up_event")',
        'job_transition(job=j, to="running", event_type=EventType.NO_SUCH_MEMBER)',
        'audited_refusal(f"{name}_refused", "actor")',
        'SOME_EVENT = "not_catalogued"',
    ],
)
def test_the_scan_catches_each_member_of_the_class(source: str) -> None:
    """The checker itself: each way of writing an uncatalogued type is found."""
    problems = [_problem(e) for e in _event_type_expressions(ast.parse(source))]
    assert problems and all(problems), source


@pytest.mark.django_db
def test_the_writer_refuses_an_unknown_type_and_writes_nothing() -> None:
    before = AuditEvent.objects.count()
    with pytest.raises(UnknownEventType, match="'made_up_event' is not in the event catalogue"):
        audit_event_record(event_type="made_up_event", data={})
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db
def test_every_catalogued_type_is_accepted() -> None:
    for member in EventType:
        audit_event_record(event_type=member, data={})
    assert set(AuditEvent.objects.values_list("event_type", flat=True)) == set(EventType.values)


@pytest.mark.django_db
def test_the_database_refuses_an_unknown_type_past_the_writer() -> None:
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO models_registry_auditevent (event_time, actor_repr, event_type, "
            "object_type, object_id, object_repr, data, prev_hash, row_hash) "
            "VALUES (CURRENT_TIMESTAMP, 'x', 'made_up_event', '', '', '', '{}', %s, %s)",
            [GENESIS_HASH, "f" * 64],
        )
    assert not AuditEvent.objects.filter(event_type="made_up_event").exists()


def _database_check_values() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'auditevent_event_type_in_catalogue'"
            )
        else:
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                "AND name = 'models_registry_auditevent_event_type_in_catalogue'"
            )
        row = cursor.fetchone()
    assert row is not None, "the database has no event type check"
    return set(re.findall(r"'([a-z_]+)'", row[0].split("RAISE")[0]))


@pytest.mark.django_db
def test_the_database_check_lists_exactly_the_catalogue() -> None:
    """A new member needs a migration re-creating the check (see migration 0012_i24)."""
    assert _database_check_values() == set(EventType.values)


@pytest.mark.django_db
def test_the_event_types_page_lists_each_type_with_its_meaning_and_count(auditor: Any) -> None:
    for _ in range(3):
        audit_event_record(event_type=EventType.HOST_CHECK, data={})
    audit_event_record(event_type=EventType.DEPLOYMENT_STEP, data={})
    client = Client()
    client.force_login(auditor)
    response = client.get(reverse("admin:models_registry_auditevent_types"))
    assert response.status_code == 200
    html = response.content.decode()
    for member in EventType:
        assert f"<code>{member.value}</code>" in html
        assert str(member.label).replace("'", "&#x27;").replace(">", "&gt;") in html
    rows = {
        kind: int(count)
        for kind, count in re.findall(
            r"<code>([a-z_]+)</code></a></td>\s*<td>.*?</td>\s*<td class=\"count\">(\d+)</td>",
            html,
            re.S,
        )
    }
    assert rows["host_check"] == 3
    assert rows["deployment_step"] == 1
    assert rows["model_version_approved"] == 0
    assert len(rows) == len(EventType)


@pytest.mark.django_db
def test_a_refused_registration_is_audited_by_the_service(engineer: Any, tmp_path: Path) -> None:
    """The admin upload and the command call the same service; it records the refusal."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match=r".+"):
        model_version_register(source_dir=empty, registered_by=engineer)
    refusal = AuditEvent.objects.get(event_type=EventType.MODEL_VERSION_REGISTER_REFUSED)
    assert refusal.actor_id == engineer.pk
    assert refusal.data["folder"] == str(empty)


def test_every_catalogued_type_is_written_somewhere() -> None:
    """No dead member: each type is named in the source (a literal or ``EventType.<NAME>``)."""
    named: set[str] = set()
    for path in _source_files():
        if path.name == "events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                named.add(node.value)
            elif (
                isinstance(node, ast.Attribute)
                and getattr(node.value, "id", "") == "EventType"
                and node.attr in EventType.__members__
            ):
                named.add(EventType[node.attr].value)
    assert sorted(set(EventType.values) - named) == []
