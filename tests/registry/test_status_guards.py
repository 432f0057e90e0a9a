"""Every status column refuses, in the database itself, any write but a transition's.

The class: a status written past ``transitions.transition``. Its members, generated for
every status table, every status that is not initial, on the database the suite runs on:
a row born in that status (``objects.create``), a queryset ``update`` to it, the same
through ``_base_manager`` and raw SQL. The probes of issue 24 are among them
(``ValidationRun.objects.create(status="passed", passed=True)``,
``ValidationRun.objects.filter(...).update(status="passed")``). On PostgreSQL the last test
also runs this module on SQLite in a child process, so one run of the suite holds both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from models_registry.models import (
    AuditEvent,
    Deployment,
    DeploymentTarget,
    Environment,
    ModelVersion,
    PaperTradingRun,
    RegistryError,
    RunStatus,
    TargetChange,
    ValidationRun,
)
from models_registry.transitions import MACHINES, ROLLING_BACK, Machine
from tests.registry.conftest import passing_validation_run

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
# What the ORM or the database says when a guarded write is refused.
REFUSED = (DatabaseError, IntegrityError, RegistryError)


def _later_statuses() -> list[tuple[Machine, str]]:
    return [
        (machine, status)
        for machine in MACHINES
        for status in machine.statuses
        if status not in machine.initial and status != ROLLING_BACK
    ]


CASES = _later_statuses()
IDS = [f"{m.model.__name__}.{m.field}={s}" for m, s in CASES]


def _values(machine: Machine, version: ModelVersion, user: Any) -> dict[str, Any]:
    """The other fields a new row of ``machine.model`` needs."""
    target = DeploymentTarget.objects.create(
        name=f"guard-{DeploymentTarget.objects.count()}", environment=Environment.STAGING
    )
    if machine.model in (ValidationRun, PaperTradingRun):
        return {"model_version": version}
    if machine.model is Deployment:
        return {"model_version": version, "target": target, "sha256": version.onnx_sha256}
    if machine.model is TargetChange:
        return {
            "target": target,
            "kind": "target",
            "values": {"parallelism": 2},
            "proposed_by": user,
        }
    template = {
        f.name: getattr(version, f.name)
        for f in ModelVersion._meta.concrete_fields
        if f.name not in ("id", "origin_key", "state", "health")
    }
    return {**template, "version": version.version + 1000}


def _existing(machine: Machine, version: ModelVersion, user: Any) -> Any:
    if machine.model is ModelVersion:
        return version
    return machine.model._default_manager.create(**_values(machine, version, user))


def _assert_refused(action: Any) -> None:
    with pytest.raises(REFUSED), transaction.atomic():
        action()


@pytest.mark.parametrize(("machine", "status"), CASES, ids=IDS)
def test_a_row_cannot_be_born_in_a_later_status(
    machine: Machine, status: str, version_factory: Any, engineer: Any
) -> None:
    version = version_factory()
    values = _values(machine, version, engineer)
    rows = machine.model._default_manager.count()
    events = AuditEvent.objects.count()
    # The ORM's own create, the base manager past any custom one, and a bulk insert.
    _assert_refused(
        lambda: machine.model._default_manager.create(**values, **{machine.field: status})
    )
    _assert_refused(lambda: machine.model._base_manager.create(**values, **{machine.field: status}))
    _assert_refused(
        lambda: machine.model._base_manager.bulk_create(
            [machine.model(**values, **{machine.field: status})]
        )
    )
    assert machine.model._default_manager.count() == rows
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(("machine", "status"), CASES, ids=IDS)
def test_a_status_cannot_be_updated_past_the_transition(
    machine: Machine, status: str, version_factory: Any, engineer: Any
) -> None:
    version = version_factory()
    row = _existing(machine, version, engineer)
    before = getattr(row, machine.field)
    table = machine.model._meta.db_table
    events = AuditEvent.objects.count()
    _assert_refused(
        lambda: machine.model._default_manager.filter(pk=row.pk).update(**{machine.field: status})
    )
    _assert_refused(
        lambda: machine.model._base_manager.filter(pk=row.pk).update(**{machine.field: status})
    )

    def raw() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f'UPDATE {table} SET "{machine.field}" = %s WHERE id = %s',
                [status, row.pk],
            )

    _assert_refused(raw)
    assert getattr(machine.model._base_manager.get(pk=row.pk), machine.field) == before
    assert AuditEvent.objects.count() == events


def test_the_issue_probes_are_refused(version_factory: Any) -> None:
    """A run born passed would be gate evidence; an update to passed would be too."""
    version = version_factory()
    with pytest.raises(REFUSED), transaction.atomic():
        ValidationRun.objects.create(model_version=version, status="passed", passed=True)
    run = ValidationRun.objects.create(model_version=version)
    with pytest.raises(REFUSED), transaction.atomic():
        ValidationRun.objects.filter(pk=run.pk).update(status="passed")
    assert ValidationRun.objects.get(pk=run.pk).status == RunStatus.QUEUED
    assert not ValidationRun.objects.filter(status="passed").exists()


def test_a_transition_still_gets_through(version_factory: Any) -> None:
    run = passing_validation_run(version_factory())
    assert ValidationRun.objects.get(pk=run.pk).status == RunStatus.PASSED
    kinds = AuditEvent.objects.filter(object_type="ValidationRun", object_id=str(run.pk))
    assert set(kinds.values_list("event_type", flat=True)) == {
        "validation_run_started",
        "validation_run_recorded",
    }


def test_other_columns_still_save(version_factory: Any) -> None:
    run = ValidationRun.objects.create(model_version=version_factory())
    ValidationRun.objects.filter(pk=run.pk).update(metrics={"sharpe": 1.0}, status=RunStatus.QUEUED)
    run.refresh_from_db()
    run.error = "note"
    run.save()
    assert ValidationRun.objects.get(pk=run.pk).metrics == {"sharpe": 1.0}


@pytest.mark.skipif(
    os.environ.get("TRADEBOT_GUARDS_ON_SQLITE") == "1", reason="already the SQLite child"
)
def test_the_same_guards_hold_on_sqlite(tmp_path: Path) -> None:
    """Run this module (and the event catalogue's database check) against the embedded
    default (SQLite) in a child process."""
    if connection.vendor == "sqlite":
        pytest.skip("this run is on SQLite already")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(TRADEBOT_GUARDS_ON_SQLITE="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-x",
            __file__,
            str(Path(__file__).with_name("test_event_catalogue.py")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
