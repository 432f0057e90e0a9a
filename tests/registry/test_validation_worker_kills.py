"""Kill -9 of a real Celery worker at each step boundary of a validation converges.

The worker is started with ``TRADEBOT_TEST_KILL_AT=<point>`` (see
``deployment/crash_points.py``): it SIGKILLs itself exactly there, so no timing
decides where the kill lands. Then reconcile (the beat's service, past the lease)
or a redelivery of the same task finishes the job, and the registry ends
consistent: no run left non-terminal, the version moved only by a recorded passing
run, no duplicate version, exactly one audit event per change, and the keyed,
anchored audit chain verifies (and stops verifying once its newest row is deleted).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from deployment import crash_points
from models_registry.models import AuditEvent, ModelState, ModelVersion, RunStatus, ValidationRun
from models_registry.services import jobs, runs
from models_registry.services.audit import verify_audit_chain
from models_registry.tasks.backtest import run_validation
from tests.registry.conftest import requires_postgresql
from tests.registry.test_audit_chain import delete_rows
from tests.registry_commands.test_run_backtest import (  # noqa: F401 -- fixtures
    GENEROUS_GATES,
    media,
    model_dir,
    store,
    version,
)
from tests.support.policy import ONE_WINDOW

pytestmark = [
    requires_postgresql,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("keyed_and_anchored"),
]

UNFINISHED = [RunStatus.QUEUED, RunStatus.RUNNING]


def killed_worker(
    point: str, celery_worker_factory: Any, media_root: Path, data_dir: Path, audit: dict[str, str]
) -> Any:
    return celery_worker_factory(
        queues="backtest",
        env={
            "MEDIA_ROOT": str(media_root),
            "TRADEBOT_DATA_DIR": str(data_dir),
            "TRADEBOT_GATES": json.dumps(GENEROUS_GATES),
            "TRADEBOT_VALIDATION_POLICY": json.dumps({"days": 10, **ONE_WINDOW}),
            crash_points.ENV_VAR: point,
            **audit,
        },
    )


def run_until_killed(target: ModelVersion, worker: Any) -> ValidationRun:
    run = runs.validation_run_request(model_version=target, requested_by=None)
    worker.wait(timeout=180)
    log = Path(worker.log_path).read_text()
    assert worker.returncode == -9, f"worker was not killed (rc {worker.returncode}):\n{log}"
    assert "at crash point" in log
    return ValidationRun.objects.get(pk=run.pk)


def events(event_type: str, run: ValidationRun | None = None) -> int:
    found = AuditEvent.objects.filter(event_type=event_type)
    if run is not None:
        found = found.filter(object_id=str(run.pk), object_type="ValidationRun")
    return found.count()


def assert_consistent(target: ModelVersion) -> None:
    """What every boundary must converge to."""
    assert not ValidationRun.objects.filter(status__in=UNFINISHED).exists(), "a run left open"
    assert ModelVersion.objects.filter(name=target.name).count() == 1, "no duplicate version"
    state = ModelVersion.objects.get(pk=target.pk).state
    passed = ValidationRun.objects.filter(model_version=target, status=RunStatus.PASSED)
    # The version is validated exactly when a recorded passing run says so, once.
    assert (state == ModelState.VALIDATED) == passed.exists()
    assert events("model_version_validated") == (1 if passed.exists() else 0)
    report = verify_audit_chain()
    assert report.ok and report.keyed and report.anchors_checked > 0, report


def assert_truncation_is_found() -> None:
    newest = AuditEvent.objects.order_by("-id").first()
    assert newest is not None
    delete_rows("id = %s", [newest.pk])
    report = verify_audit_chain()
    assert not report.ok and str(newest.pk) in report.reason, report


# Where the kill lands, and what the database shows right after it.
BOUNDARIES = [
    # claimed, nothing computed
    ("validation_claimed", RunStatus.RUNNING, False),
    # backtest done and its report published, nothing recorded
    ("validation_computed", RunStatus.RUNNING, False),
    # run recorded as passed inside the transaction, version not moved: all rolled back
    ("validation_recorded", RunStatus.RUNNING, False),
    # committed (run passed, version validated), the task never returned nor was acked
    ("validation_committed", RunStatus.PASSED, True),
]


@pytest.mark.parametrize(("point", "left_status", "version_moved"), BOUNDARIES)
def test_a_validation_killed_at_each_boundary_converges_through_reconcile(
    point: str,
    left_status: str,
    version_moved: bool,
    version: ModelVersion,  # noqa: F811
    media: Path,  # noqa: F811
    store: Path,  # noqa: F811
    settings: Any,
    celery_worker_factory: Any,
    keyed_and_anchored: dict[str, str],
) -> None:
    settings.TRADEBOT_GATES = GENEROUS_GATES
    worker = killed_worker(point, celery_worker_factory, media, store, keyed_and_anchored)

    run = run_until_killed(version, worker)

    assert run.status == left_status, (run.status, run.error)
    moved = ModelVersion.objects.get(pk=version.pk).state == ModelState.VALIDATED
    assert moved == version_moved
    assert jobs.runs_reconcile() == [], "inside its lease the run is left alone"

    ended = jobs.runs_reconcile(running_after=timedelta(0))

    run.refresh_from_db()
    if left_status == RunStatus.RUNNING:
        assert [r.pk for r in ended] == [run.pk]
        assert run.status == RunStatus.ERROR and "worker died" in run.error
        assert events("validation_run_reconciled", run) == 1
    else:
        assert ended == [] and run.status == RunStatus.PASSED
    # The killed worker's message, redelivered later (acks_late), changes nothing.
    late = run_validation.apply(args=[run.pk], task_id=run.task_id).get()
    assert "not queued" in late["skipped"]
    assert_consistent(version)
    assert_truncation_is_found()


def test_a_redelivery_inside_the_lease_finishes_the_killed_run_once(
    version: ModelVersion,  # noqa: F811
    media: Path,  # noqa: F811
    store: Path,  # noqa: F811
    settings: Any,
    celery_worker_factory: Any,
    keyed_and_anchored: dict[str, str],
) -> None:
    """The other way out: the task's own message comes back before the lease ends."""
    settings.TRADEBOT_GATES = GENEROUS_GATES
    worker = killed_worker(
        "validation_recorded", celery_worker_factory, media, store, keyed_and_anchored
    )
    run = run_until_killed(version, worker)
    assert run.status == RunStatus.RUNNING

    resumed = run_validation.apply(args=[run.pk], task_id=run.task_id).get()

    assert resumed["status"] == RunStatus.PASSED, resumed
    assert resumed["version_state"] == ModelState.VALIDATED
    assert events("validation_run_recorded", run) == 1
    assert jobs.runs_reconcile(running_after=timedelta(0)) == []
    again = run_validation.apply(args=[run.pk], task_id=run.task_id).get()
    assert "not queued" in again["skipped"]
    assert_consistent(version)
