"""The beat schedules as created, run by a real Celery worker on the test database."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from models_registry.models import (
    ApprovalSuspension,
    AuditEvent,
    DeploymentTarget,
    HealthStatus,
    ModelVersion,
    RunStatus,
    ValidationRun,
)
from models_registry.schedules import ensure_periodic_tasks
from models_registry.services import deployments, lifecycle
from tests.monitoring.conftest import (
    FAILING_GATES,
    INITIAL_ROWS,
    PASSING_GATES,
    People,
    grow_store,
    worker_env,
)
from tests.registry.conftest import requires_postgresql
from tests.support.budgets import budget
from tests.support.policy import adopt_settings_policy
from tradebot.celery import app

TASK_TIMEOUT = 120


def fire(periodic: PeriodicTask, **kwargs: Any) -> list[dict[str, Any]]:
    """Send the task by the name beat stored, then wait for the per-version runs it queued."""
    fanned = app.send_task(periodic.task, kwargs=kwargs).get(timeout=TASK_TIMEOUT)
    return [app.AsyncResult(q["task_id"]).get(timeout=TASK_TIMEOUT) for q in fanned["queued"]]


def stop(worker: Any) -> None:
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)


@requires_postgresql  # the worker needs a database it can share (SQLite tests run in memory)
@pytest.mark.django_db(transaction=True)
def test_beat_revalidation_passes_then_degrades_the_model_through_a_worker(
    production_version: ModelVersion,
    people: People,
    production_target: DeploymentTarget,
    media: Path,
    store: Path,
    shared_data_dir: Path,
    tmp_path: Path,
    celery_worker_factory: Any,
    settings: Any,
) -> None:
    ensure_periodic_tasks()
    periodic = PeriodicTask.objects.get(name="Re-validate production models")
    assert periodic.task == "models_registry.revalidate_production"
    worker = celery_worker_factory(
        queues="default,backtest", env=worker_env(media, store, PASSING_GATES), name="pass"
    )

    first = fire(periodic)
    again = fire(periodic)  # beat firing twice on the same day

    assert first[0]["run"]["status"] == RunStatus.PASSED, first
    assert again[0]["run"]["id"] == first[0]["run"]["id"] and not again[0]["created"]
    run = ValidationRun.objects.get(kind=ValidationRun.KIND_SCHEDULED)
    assert TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists()
    assert ModelVersion.objects.get(pk=production_version.pk).health == HealthStatus.HEALTHY
    stop(worker)

    # New bars arrive and the model no longer holds up against its baseline.
    grow_store(store, shared_data_dir, INITIAL_ROWS + 72, tmp_path)
    # The drift rule is tightened the way the team does it: a confirmed policy (issue 25).
    settings.TRADEBOT_GATES = FAILING_GATES
    adopt_settings_policy()
    worker = celery_worker_factory(
        queues="default,backtest", env=worker_env(media, store, FAILING_GATES), name="fail"
    )
    failed = fire(periodic, now="2099-01-02T00:30:00+00:00")

    assert failed[0]["slot"] == "2099-01-02"
    assert failed[0]["run"]["failed_gates"] == ["drift_sharpe_drop"]
    version = ModelVersion.objects.get(pk=production_version.pk)
    assert version.health == HealthStatus.DEGRADED and version.state == "in_production"
    assert ApprovalSuspension.objects.filter(validation_run_id=failed[0]["run"]["id"]).exists()
    assert AuditEvent.objects.filter(event_type="model_version_degraded").count() == 1
    with pytest.raises(lifecycle.GateFailed, match="suspended"):
        deployments.deployment_request(
            model_version=version, target=production_target, requested_by=people.deployer
        )
    # The console mail backend writes the message to the worker's log, after the commit.
    deadline = time.monotonic() + budget(10)
    while "degraded: approval suspended" not in worker.log_path.read_text():
        assert time.monotonic() < deadline, worker.log_path.read_text()[-3000:]
        time.sleep(0.2)
    assert people.approver.email in worker.log_path.read_text()
