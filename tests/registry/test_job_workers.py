"""Runs on real Celery workers: a worker killed -9 mid-run converges through reconcile.

The kill lands at the worst step boundary of a validation: the result is written but
the version has not moved yet (the worker is held there by a row lock the test takes
on the version, so no timing decides where the kill lands). The transaction dies
with the worker: the database shows the run ``running``, the version untouched.
Reconcile then ends the run (audited); a redelivery of the same task does nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from models_registry.models import AuditEvent, ModelState, ModelVersion, RunStatus, ValidationRun
from models_registry.services import jobs, runs
from models_registry.services.audit import verify_audit_chain
from models_registry.tasks.backtest import run_validation
from tests.conftest import PROJECT_ROOT, database_url_for_subprocesses
from tests.registry.conftest import requires_postgresql
from tests.registry_commands.test_run_backtest import (  # noqa: F401 -- fixtures
    GENEROUS_GATES,
    media,
    model_dir,
    store,
    version,
)

pytestmark = [requires_postgresql, pytest.mark.django_db(transaction=True)]


def wait_for(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def waiting_on_a_lock(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()"
    ).fetchone()
    return bool(row and row[0])


def test_a_worker_killed_between_result_and_version_move_converges(
    version: ModelVersion,  # noqa: F811
    media: Path,  # noqa: F811
    store: Path,  # noqa: F811
    settings: Any,
    celery_worker_factory: Any,
) -> None:
    settings.TRADEBOT_GATES = GENEROUS_GATES
    worker = celery_worker_factory(
        queues="backtest",
        env={
            "MEDIA_ROOT": str(media),
            "TRADEBOT_DATA_DIR": str(store),
            "TRADEBOT_GATES": json.dumps(GENEROUS_GATES),
            "TRADEBOT_VALIDATION_POLICY": json.dumps(settings.TRADEBOT_VALIDATION_POLICY),
        },
    )
    url = database_url_for_subprocesses().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as watcher, psycopg.connect(url) as holder:
        # Hold the version's row: the worker records the passed run, then waits to move it.
        # NO KEY UPDATE still lets runs reference the version (their FK check), while it
        # blocks the lifecycle's SELECT ... FOR UPDATE.
        holder.execute(
            "SELECT id FROM models_registry_modelversion WHERE id = %s FOR NO KEY UPDATE",
            [version.pk],
        )
        run = runs.validation_run_request(model_version=version, requested_by=None)
        wait_for(
            lambda: ValidationRun.objects.get(pk=run.pk).status == RunStatus.RUNNING,
            "the worker to claim the run",
        )
        wait_for(lambda: waiting_on_a_lock(watcher), "the worker to reach the version move")
        worker.kill()  # SIGKILL: no cleanup, its open transaction dies with it
        worker.wait(timeout=30)
        holder.rollback()

    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING, "the half-written result died with the worker"
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.TRAINED
    assert jobs.runs_reconcile() == [], "inside its lease the run is left alone"

    ended = jobs.runs_reconcile(running_after=timedelta(0))

    assert [r.pk for r in ended] == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.ERROR and "worker died" in run.error
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.TRAINED
    assert ModelVersion.objects.filter(name=version.name).count() == 1, "no duplicate version"
    assert (
        AuditEvent.objects.filter(
            event_type="validation_run_reconciled", object_id=str(run.pk)
        ).count()
        == 1
    )
    assert not AuditEvent.objects.filter(event_type="model_version_validated").exists()
    # The same message redelivered later (acks_late) finds the run finished: nothing happens.
    late = run_validation.apply(args=[run.pk], task_id=run.task_id).get()
    assert "not queued" in late["skipped"]
    assert ValidationRun.objects.get(pk=run.pk).status == RunStatus.ERROR
    nothing_stuck = ValidationRun.objects.filter(status__in=["queued", "running"])
    assert not nothing_stuck.exists()
    assert verify_audit_chain().ok


def test_a_run_requested_while_the_broker_is_down_is_not_left_queued(
    version_factory: Any, tmp_path: Path
) -> None:
    """A real process whose broker (a Redis port nobody listens on) refuses the task."""
    target = version_factory()
    script = (
        "from models_registry.models import ModelVersion\n"
        "from models_registry.services import runs\n"
        f"runs.validation_run_request(model_version=ModelVersion.objects.get(pk={target.pk}),"
        " requested_by=None)\n"
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_subprocesses(),
        "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",  # discard port: refused at once
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = ValidationRun.objects.get(model_version=target)
    assert run.status == RunStatus.ERROR, (run.status, done.stderr[-2000:])
    assert "could not queue its task" in run.error
    assert AuditEvent.objects.filter(
        event_type="validation_run_error", object_id=str(run.pk)
    ).exists()
    assert ModelVersion.objects.get(pk=target.pk).state == ModelState.TRAINED
