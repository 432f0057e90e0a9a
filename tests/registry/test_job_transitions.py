"""Every run and deployment status change goes through ``services/jobs.py``.

The database itself (PostgreSQL triggers from django-pgtrigger) refuses a change of a
version's state or a job's status that did not come from a transition service; the
worker's claim knows its own task id; reconcile ends what is stuck past its lease.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from models_registry.models import (
    AuditEvent,
    Deployment,
    DeploymentStatus,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    ValidationRun,
)
from models_registry.services import jobs, runs
from tests.registry.conftest import requires_postgresql

pytestmark = pytest.mark.django_db


def events(obj: Any, event_type: str | None = None) -> list[AuditEvent]:
    found = AuditEvent.objects.filter(object_type=type(obj).__name__, object_id=str(obj.pk))
    if event_type:
        found = found.filter(event_type=event_type)
    return list(found.order_by("id"))


def refused(sql_or_call: Any, *params: Any) -> str:
    """Run a write that must be refused by the database; the error message it gave."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        if callable(sql_or_call):
            sql_or_call()
        else:
            with connection.cursor() as cursor:
                cursor.execute(sql_or_call, params)
    return str(caught.value)


# --- the database gate -------------------------------------------------------------------


@requires_postgresql
def test_base_manager_and_raw_sql_cannot_move_a_version_state(version_factory: Any) -> None:
    version = version_factory()
    message = refused(
        lambda: ModelVersion._base_manager.filter(pk=version.pk).update(state="in_production")
    )
    assert "state trained -> in_production changes only through a transition service" in message
    refused("UPDATE models_registry_modelversion SET state = 'approved' WHERE id = %s", version.pk)
    refused(
        "INSERT INTO models_registry_modelversion (name, version, symbol, interval, kind, state,"
        " source, created_at, artifact_dir, onnx_file, onnx_sha256, metadata_file,"
        " metadata_sha256, plot_file, plot_sha256, metadata, metrics, data_content_hash,"
        " allow_short_history, health) VALUES ('x', 1, 'BTCUSDT', '1h', 'price', 'approved',"
        " 'trained', now(), 'x', 'x', 'x', 'x', 'x', '', '', '{}', '{}', '', false, 'unknown')"
    )
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.TRAINED
    # Other columns stay writable: only the lifecycle column is held.
    ModelVersion._base_manager.filter(pk=version.pk).update(metrics={"note": 1})


@requires_postgresql
def test_job_statuses_are_held_by_the_database(version_factory: Any) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    validation = version.validation_runs.get()
    paper = version.paper_runs.get(mode="forward")
    deployment = version.deployments.get()
    for model, row, to in (
        (ValidationRun, validation, "running"),
        (PaperTradingRun, paper, "queued"),
        (Deployment, deployment, "running"),
    ):
        message = refused(
            lambda m=model, r=row, t=to: m._base_manager.filter(pk=r.pk).update(status=t)
        )
        assert "changes only through a transition service" in message
        table = model._meta.db_table
        refused(f"UPDATE {table} SET status = %s WHERE id = %s", to, row.pk)
        assert model.objects.get(pk=row.pk).status == row.status


# --- the transition table ----------------------------------------------------------------


def test_a_transition_checks_its_source_and_writes_one_audit_event(version_factory: Any) -> None:
    version = version_factory()
    run = ValidationRun.objects.create(model_version=version, task_id=jobs.new_task_id())
    before = AuditEvent.objects.count()

    jobs.job_transition(job=run, to=RunStatus.RUNNING, event_type="validation_run_started")
    assert AuditEvent.objects.count() == before + 1
    assert events(run, "validation_run_started")[0].data["old_status"] == "queued"

    with pytest.raises(jobs.JobTransitionRefused, match="is running; it cannot become queued"):
        jobs.job_transition(job=run, to=RunStatus.QUEUED, event_type="x")
    runs.run_fail(run=run, error="boom")
    with pytest.raises(jobs.JobTransitionRefused, match="is error"):
        jobs.job_transition(job=run, to=RunStatus.PASSED, event_type="x")
    assert AuditEvent.objects.count() == before + 2
    assert ValidationRun.objects.get(pk=run.pk).status == RunStatus.ERROR


def test_needs_attention_is_a_terminal_deployment_status() -> None:
    moves = jobs.ALLOWED[Deployment]
    assert DeploymentStatus.NEEDS_ATTENTION in moves[DeploymentStatus.RUNNING]
    assert DeploymentStatus.NEEDS_ATTENTION in moves["rolling_back"]
    assert DeploymentStatus.NEEDS_ATTENTION not in moves


# --- task ids and redelivery ------------------------------------------------------------


def test_the_task_id_is_made_with_the_row_and_only_that_task_claims_it(
    version_factory: Any,
) -> None:
    version = version_factory()
    run = runs.validation_run_request(model_version=version, requested_by=None)
    assert run.task_id, "the row names its task before anything is queued"
    assert events(run, "validation_requested")[0].data["task_id"] == run.task_id

    stranger = runs.run_claim(run, task_id="someone-else")
    assert stranger.job is None and "belongs to task" in stranger.reason
    first = runs.run_claim(run, task_id=run.task_id)
    assert first.job is not None and not first.redelivered
    assert first.job.status == RunStatus.RUNNING and first.job.started_at is not None
    again = runs.run_claim(run, task_id=run.task_id)  # the worker died; Celery redelivers
    assert again.job is not None and again.redelivered
    assert len(events(run, "validation_run_started")) == 1


# --- reconcile -------------------------------------------------------------------------


def test_a_run_whose_task_never_reached_the_broker_is_reconciled(version_factory: Any) -> None:
    # Inside a test transaction on_commit never fires: exactly a run whose process died
    # (or whose broker was down) between the commit and sending the task.
    version = version_factory()
    run = runs.validation_run_request(model_version=version, requested_by=None)
    assert jobs.runs_reconcile() == [], "inside its lease a queued run is left alone"

    ended = jobs.runs_reconcile(queued_after=timedelta(0))
    assert [r.pk for r in ended] == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.ERROR and "no worker took this run" in run.error
    assert len(events(run, "validation_run_reconciled")) == 1
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.TRAINED
    assert jobs.runs_reconcile(queued_after=timedelta(0)) == []


def test_a_running_paper_run_past_its_lease_is_reconciled(version_factory: Any) -> None:
    version = version_factory(ModelState.VALIDATED)
    run = runs.paper_run_request(model_version=version, requested_by=None)
    runs.run_claim(run, task_id=run.task_id)
    zero = timedelta(0)
    ended = jobs.runs_reconcile(running_after=zero, queued_after=zero)
    assert [r.pk for r in ended] == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.ERROR and "worker died" in run.error
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.VALIDATED
    # A late result from the dead worker's task is not recorded over the reconciled error.
    assert runs.run_claim(run, task_id=run.task_id).job is None


def test_the_reconcile_beat_is_scheduled() -> None:
    from models_registry.schedules import SCHEDULES

    assert any(s.task == "models_registry.reconcile_jobs" for s in SCHEDULES)
