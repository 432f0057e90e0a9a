"""Scheduled re-validation in process: windows, one run per slot, drift, degraded, recovered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.core import mail

from engine.data import stored_candle_range
from models_registry.models import (
    ApprovalSuspension,
    AuditEvent,
    DeploymentTarget,
    HealthStatus,
    ModelState,
    ModelVersion,
    RunStatus,
    ValidationRun,
)
from models_registry.services import deployments, lifecycle, monitoring
from tests.monitoring.conftest import (
    BASELINE_HOURS,
    FAILING_GATES,
    INITIAL_ROWS,
    PASSING_GATES,
    People,
    grow_store,
    out_of_sample_start,
)
from tests.support.policy import adopt_settings_policy


def scheduled_runs(version: ModelVersion) -> list[ValidationRun]:
    return list(version.validation_runs.filter(kind=ValidationRun.KIND_SCHEDULED))


@pytest.mark.django_db
def test_passing_run_judges_only_new_bars_and_marks_the_version_healthy(
    production_version: ModelVersion, store: Path
) -> None:
    result = monitoring.scheduled_validation(model_version=production_version, slot="2024-02-10")

    run = result.run
    assert run is not None and result.created
    assert run.status == RunStatus.PASSED, (run.error, run.gate_results)
    assert run.kind == ValidationRun.KIND_SCHEDULED and run.scheduled_slot == "2024-02-10"
    # Out-of-sample by construction: right after the baseline window, up to the last stored bar.
    first_new = out_of_sample_start(production_version) + pd.Timedelta(hours=BASELINE_HOURS)
    assert run.window_start == first_new
    assert run.window_end == stored_candle_range(store, "BTCUSDT", "1h")[1]
    assert not run.in_sample
    names = {g["name"] for g in run.gate_results}
    assert {"min_sharpe", "drift_sharpe_drop", "drift_hit_rate_drop", "drift_max_drawdown"} <= names
    assert run.drift["baseline"]["sharpe"] == 0.0
    assert run.drift["now"]["sharpe"] == run.metrics["sharpe"]
    assert run.drift["live"]["comparisons"] == []  # the production host has no journal yet
    version = ModelVersion.objects.get(pk=production_version.pk)
    assert version.health == HealthStatus.HEALTHY
    assert version.last_scheduled_window_end == run.window_end
    assert version.state == ModelState.IN_PRODUCTION


@pytest.mark.django_db
def test_the_same_slot_twice_gives_one_run_and_few_new_bars_give_none(
    production_version: ModelVersion,
) -> None:
    first = monitoring.scheduled_validation(model_version=production_version, slot="2024-02-10")
    again = monitoring.scheduled_validation(model_version=production_version, slot="2024-02-10")
    assert again.run == first.run and not again.created
    assert len(scheduled_runs(production_version)) == 1

    # A new slot the next day, but no new bar arrived: no run, and the reason is given.
    later = monitoring.scheduled_validation(model_version=production_version, slot="2024-02-11")
    assert later.run is None
    assert "0 new 1h bars" in later.skipped and "min_new_bars" in later.skipped
    assert (
        monitoring.scheduled_validation_run(model_version=production_version, slot="2024-02-12")
        is None
    )
    assert len(scheduled_runs(production_version)) == 1


@pytest.mark.django_db
def test_a_duplicate_that_loses_the_race_gets_the_existing_run(
    production_version: ModelVersion,
) -> None:
    options = monitoring.ValidationOptions(strategy="ml_basic")
    first, created = monitoring._create_slot_run(production_version, "2024-03-01", options, "t1")
    second, created_again = monitoring._create_slot_run(
        production_version, "2024-03-01", options, "t2"
    )
    assert created and not created_again
    assert second.pk == first.pk and second.task_id == "t1"


@pytest.mark.django_db
def test_failing_run_degrades_suspends_mails_blocks_deploys_and_recovery_keeps_it_suspended(
    production_version: ModelVersion,
    people: People,
    production_target: DeploymentTarget,
    settings: Any,
    store: Path,
    shared_data_dir: Path,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    approval = lifecycle.current_approval(production_version)
    assert approval is not None
    settings.TRADEBOT_GATES = FAILING_GATES
    adopt_settings_policy()  # the policy is data (issue 25)

    with django_capture_on_commit_callbacks(execute=True):
        failed = monitoring.scheduled_validation_run(
            model_version=production_version, slot="2024-02-10"
        )

    assert failed is not None and failed.status == RunStatus.FAILED
    assert [g["name"] for g in failed.gate_results if not g["passed"]] == ["drift_sharpe_drop"]
    version = ModelVersion.objects.get(pk=production_version.pk)
    assert version.health == HealthStatus.DEGRADED
    assert version.state == ModelState.IN_PRODUCTION  # rolling back stays a human decision
    suspension = ApprovalSuspension.objects.get()
    assert suspension.approval == approval and suspension.validation_run == failed
    assert "drift_sharpe_drop" in suspension.reason
    event = AuditEvent.objects.get(event_type="model_version_degraded")
    assert event.data["validation_run"] == failed.pk
    assert event.data["suspended_approval"] == approval.pk
    assert len(mail.outbox) == 1
    # approvers decide on the approval, deployers are the ones who can roll back
    assert sorted(mail.outbox[0].to) == sorted([people.approver.email, people.deployer.email])
    assert "degraded" in mail.outbox[0].subject and f"#{failed.pk}" in mail.outbox[0].body
    with pytest.raises(lifecycle.GateFailed, match="suspended"):
        deployments.deployment_request(
            model_version=version, target=production_target, requested_by=people.deployer
        )
    assert AuditEvent.objects.filter(event_type="deployment_request_refused").count() == 1

    # New bars arrive, the model passes again: recovered, but the approval stays suspended.
    grow_store(store, shared_data_dir, INITIAL_ROWS + 72, tmp_path)
    settings.TRADEBOT_GATES = PASSING_GATES
    adopt_settings_policy()  # the policy is data (issue 25)
    with django_capture_on_commit_callbacks(execute=True):
        passed = monitoring.scheduled_validation_run(model_version=version, slot="2024-02-11")

    assert passed is not None and passed.status == RunStatus.PASSED, passed.gate_results
    assert passed.window_start == failed.window_end + pd.Timedelta(hours=1)
    version.refresh_from_db()
    assert version.health == HealthStatus.RECOVERED
    assert (
        AuditEvent.objects.get(event_type="model_version_recovered").data["approval_restored"]
        is False
    )
    assert lifecycle.current_approval(version) is None
    assert len(mail.outbox) == 1  # recovery does not page anyone


@pytest.mark.django_db
def test_a_still_degraded_version_is_not_flagged_again(
    production_version: ModelVersion,
    settings: Any,
    store: Path,
    shared_data_dir: Path,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.TRADEBOT_GATES = FAILING_GATES
    adopt_settings_policy()  # the policy is data (issue 25)
    with django_capture_on_commit_callbacks(execute=True):
        monitoring.scheduled_validation_run(model_version=production_version, slot="2024-02-10")
        grow_store(store, shared_data_dir, INITIAL_ROWS + 72, tmp_path)
        second = monitoring.scheduled_validation_run(model_version=production_version, slot="d2")

    assert second is not None and second.status == RunStatus.FAILED
    assert AuditEvent.objects.filter(event_type="model_version_degraded").count() == 1
    assert ApprovalSuspension.objects.count() == 1
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_revalidate_production_uses_the_utc_date_as_slot(
    production_version: ModelVersion,
) -> None:
    now = pd.Timestamp("2026-11-26 23:30", tz="UTC").to_pydatetime()
    results = monitoring.revalidate_production(now=now)

    assert [r.slot for r in results] == ["2026-11-26"]
    assert results[0].run is not None and results[0].run.scheduled_slot == "2026-11-26"
    assert monitoring.revalidate_production(now=now)[0].run == results[0].run


@pytest.mark.django_db
def test_weekly_walk_forward_report_is_recorded_without_judging_the_version(
    production_version: ModelVersion,
) -> None:
    now = pd.Timestamp("2026-11-23 03:00", tz="UTC").to_pydatetime()
    result = monitoring.walk_forward_report(model_version=production_version, parts=3, now=now)

    run = result.run
    assert run is not None and run.scheduled_slot == "wf-2026-W48"
    assert run.window_start == out_of_sample_start(production_version)  # the whole OOS history
    assert len(run.metrics["walk_forward"]) == 3
    assert run.drift["walk_forward"]["parts"] == 3
    version = ModelVersion.objects.get(pk=production_version.pk)
    assert version.health == HealthStatus.UNKNOWN and version.last_scheduled_window_end is None


@pytest.mark.django_db
def test_command_runs_the_daily_validation_and_reports_json(
    production_version: ModelVersion,
) -> None:
    import json
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("run_scheduled_validation", "--slot", "2024-02-10", "--json", stdout=out)
    first = json.loads(out.getvalue())
    assert [(r["model_version"], r["created"]) for r in first] == [(production_version.pk, True)]
    assert first[0]["run"]["status"] == RunStatus.PASSED

    text = StringIO()
    call_command("run_scheduled_validation", production_version.name, "--slot", "x", stdout=text)
    assert "no run:" in text.getvalue() and "min_new_bars" in text.getvalue()
