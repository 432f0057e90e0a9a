"""One declared table per status field, read by one transition function.

The class: a status change the table does not declare (wrong source, wrong target, or the
right move recorded under the wrong event), or a declared one that writes anything but
exactly one audit event. Its members are generated: for every table, every reachable
status, every (target, event) pair of that table.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from models_registry.events import EventType
from models_registry.models import (
    AuditEvent,
    Deployment,
    DeploymentTarget,
    Environment,
    HealthStatus,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    TargetChange,
    ValidationRun,
)
from models_registry.services import deployments, jobs, monitoring
from models_registry.services.audit import verify_audit_chain
from models_registry.transitions import (
    MACHINES,
    ROLLING_BACK,
    TARGET_CHANGE_STATUS,
    VERSION_STATE,
    GateFailed,
    Machine,
    TransitionRefused,
    machine_for,
    transition,
)
from tests.support.walk import path_to, walk, walker

pytestmark = pytest.mark.django_db


class _Rollback(Exception):
    pass


def test_the_docs_page_is_generated_from_the_tables() -> None:
    call_command("state_machines", "--check")


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_status_of_a_table_is_a_choice_of_its_field(machine: Machine) -> None:
    choices = {value for value, _label in machine.model._meta.get_field(machine.field).choices}
    assert set(machine.statuses) - {ROLLING_BACK} <= choices
    assert all(isinstance(move.event, EventType) for move in machine.moves)


def _fresh_row(machine: Machine, version: ModelVersion, target: DeploymentTarget, user: Any) -> Any:
    if machine.model is ValidationRun:
        return ValidationRun.objects.create(model_version=version)
    if machine.model is PaperTradingRun:
        return PaperTradingRun.objects.create(model_version=version)
    if machine.model is Deployment:
        return Deployment.objects.create(
            target=target, model_version=version, requested_by=user, sha256=version.onnx_sha256
        )
    if machine.model is TargetChange:
        return TargetChange.objects.create(
            target=target, kind="target", values={"parallelism": 2}, proposed_by=user
        )
    return version


def _attempts(machine: Machine, source: str, events: list[str]) -> list[tuple[str, str]]:
    """Every event for a (source, target) pair the table declares; one for any other pair."""
    pairs = []
    for to in machine.statuses:
        declared = any(machine.move(source, to, event) for event in events)
        pairs += [(to, event) for event in (events if declared else events[:1])]
    return pairs


def _attempt(machine: Machine, row: Any, source: str, to: str, event: str) -> int:
    """Try one move in a savepoint rolled back after; 1 if it was refused."""
    declared = machine.move(source, to, event) is not None
    try:
        with transaction.atomic():
            before = AuditEvent.objects.count()
            try:
                moved = transition(machine=machine, row=row, to=to, event=event, actor=walker())
            except TransitionRefused:
                assert not declared, f"{source} -> {to} ({event}) was refused"
                assert AuditEvent.objects.count() == before
                assert getattr(type(row).objects.get(pk=row.pk), machine.field) == source
                return 1
            assert declared, f"{source} -> {to} ({event}) is not declared"
            assert getattr(moved, machine.field) == to
            written = AuditEvent.objects.order_by("id")[before:]
            assert [e.event_type for e in written] == [event]
            assert written[0].data[f"new_{machine.field}"] == to
            raise _Rollback
    except _Rollback:
        return 0


def _reachable(machine: Machine) -> list[str]:
    found = []
    for status in machine.statuses:
        try:
            path_to(machine, machine.initial[0], status)
        except LookupError:
            continue
        found.append(status)
    return found


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_only_declared_moves_change_a_status_and_each_writes_one_event(
    machine: Machine, version_factory: Any, engineer: Any
) -> None:
    version = version_factory()
    target = DeploymentTarget.objects.create(
        name="machines", environment=Environment.STAGING, is_local=True
    )
    row = _fresh_row(machine, version, target, engineer)
    events = sorted({move.event for move in machine.moves})
    checked = refused = 0
    for source in _reachable(machine):
        try:
            with transaction.atomic():
                start = walk(row, source, field=machine.field)
                for to, event in _attempts(machine, source, events):
                    refused += _attempt(machine, start, source, to, event)
                    checked += 1
                raise _Rollback
        except _Rollback:
            pass
    assert checked > refused > 0
    assert verify_audit_chain().ok


@pytest.mark.parametrize(
    ("machine", "to", "event"),
    [
        (VERSION_STATE, "rejected", EventType.MODEL_VERSION_REJECTED),
        (
            TARGET_CHANGE_STATUS,
            TargetChange.STATUS_APPLIED,
            EventType.DEPLOYMENT_TARGET_CHANGE_APPLIED,
        ),
    ],
)
def test_a_declared_permission_is_checked_by_the_transition(
    machine: Machine, to: str, event: str, version_factory: Any, engineer: Any, auditor: Any
) -> None:
    target = DeploymentTarget.objects.create(
        name="perm", environment=Environment.PRODUCTION, is_local=True
    )
    row = _fresh_row(machine, version_factory(), target, engineer)
    before = AuditEvent.objects.count()
    with pytest.raises(GateFailed, match="does not hold"):
        transition(machine=machine, row=row, to=to, event=event, actor=auditor)
    assert AuditEvent.objects.count() == before


def test_the_versions_six_wrappers_are_rows_of_its_table() -> None:
    events = {move.event for move in VERSION_STATE.moves}
    assert {
        EventType.MODEL_VERSION_VALIDATED,
        EventType.MODEL_VERSION_PAPER_TESTED,
        EventType.MODEL_VERSION_STAGED,
        EventType.MODEL_VERSION_APPROVED,
        EventType.MODEL_VERSION_REJECTED,
        EventType.MODEL_VERSION_IN_PRODUCTION,
        EventType.MODEL_VERSION_RETIRED,
    } == events
    assert machine_for(ModelVersion, "state") is VERSION_STATE


def test_the_move_to_healthy_writes_an_audit_event(version_factory: Any) -> None:
    version = version_factory()
    run = ValidationRun.objects.create(model_version=version)
    monitoring.model_version_mark_passing(model_version=version, validation_run=run)
    assert ModelVersion.objects.get(pk=version.pk).health == HealthStatus.HEALTHY
    event = AuditEvent.objects.get(event_type=EventType.MODEL_VERSION_HEALTHY)
    assert event.object_id == str(version.pk)
    assert (event.data["old_health"], event.data["new_health"]) == ("unknown", "healthy")


def test_a_scheduled_run_is_born_queued_and_claimed(version_factory: Any) -> None:
    version = version_factory()
    options = monitoring.ValidationOptions(
        strategy="ml_basic", start="2024-01-01T00:00:00+00:00", end="2024-02-01T00:00:00+00:00"
    )
    run, created = monitoring._create_slot_run(version, "2026-12-07", options, "task-1")
    assert created and run.status == RunStatus.RUNNING and run.task_id == "task-1"
    moves = AuditEvent.objects.filter(object_type="ValidationRun", object_id=str(run.pk))
    assert list(moves.order_by("id").values_list("event_type", flat=True)) == [
        "scheduled_validation_started",
        "validation_run_started",
    ]
    started = moves.get(event_type="validation_run_started")
    assert (started.data["old_status"], started.data["new_status"]) == ("queued", "running")


def test_the_claim_records_the_replaced_version_in_its_own_audited_move(
    version_factory: Any, deployer: Any, production_target: DeploymentTarget
) -> None:
    live = version_factory("in_production")
    newer = version_factory("approved")
    deployment = deployments.deployment_request(
        model_version=newer, target=production_target, requested_by=deployer, enqueue=False
    )
    claim = deployments.deployment_claim_for_task(deployment.pk, task_id="")
    assert claim.job is not None and claim.job.previous_version_id == live.pk
    started = AuditEvent.objects.get(
        event_type=EventType.DEPLOYMENT_STARTED, object_id=str(deployment.pk)
    )
    assert started.data["previous_version"] == live.pk
    assert jobs.is_finished(claim.job) is False
    assert claim.job.started_at is not None and claim.job.started_at <= timezone.now()
