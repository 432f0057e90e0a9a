"""Validation and paper trading runs: request one, record its outcome, move the version on.

A request creates the run row (``queued``) and queues the Celery task after the
transaction commits, so a worker never looks for a row that is not there yet.
Completing a run records its figures and gate results; a passing run moves the
version forward through the lifecycle service, which writes its own audit event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from models_registry.models import (
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RegistryError,
    RunStatus,
    ValidationRun,
)
from models_registry.services import lifecycle
from models_registry.services.audit import audit_event_record

logger = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """What a task measured, in plain values the registry stores."""

    window_start: datetime | None
    window_end: datetime | None
    metrics: dict[str, Any]
    gate_results: list[dict[str, Any]]
    passed: bool
    data_content_hash: str = ""
    benchmark_metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    in_sample: bool = False
    exploratory: bool = False
    exploratory_reasons: list[str] = field(default_factory=list)
    report_dir: str = ""
    plot_file: str = ""
    bars: int = 0
    trades: int = 0
    divergence: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)


def validation_run_request(
    *,
    model_version: ModelVersion,
    requested_by: AbstractBaseUser | None,
    config: dict[str, Any] | None = None,
) -> ValidationRun:
    return _run_request(
        ValidationRun, model_version, requested_by, config,
        needs=ModelState.TRAINED, what="validated", event_type="validation_requested",
    )  # fmt: skip


def paper_run_request(
    *,
    model_version: ModelVersion,
    requested_by: AbstractBaseUser | None,
    config: dict[str, Any] | None = None,
) -> PaperTradingRun:
    return _run_request(
        PaperTradingRun, model_version, requested_by, config,
        needs=ModelState.VALIDATED, what="paper traded", event_type="paper_run_requested",
    )  # fmt: skip


def _run_request(
    model: Any,
    version: ModelVersion,
    requested_by: AbstractBaseUser | None,
    config: dict[str, Any] | None,
    *,
    needs: str,
    what: str,
    event_type: str,
) -> Any:
    """Create a queued run and hand it to its task once the row is committed."""
    if version.state != needs:
        raise lifecycle.TransitionRefused(
            f"{version} is {version.get_state_display().lower()}; "
            f"only a {ModelState(needs).label.lower()} version is {what}."
        )
    actor = requested_by if requested_by and requested_by.is_authenticated else None
    with transaction.atomic():
        run = model.objects.create(model_version=version, requested_by=actor, config=config or {})
        audit_event_record(
            event_type=event_type,
            actor=requested_by,
            obj=run,
            data={"version": version.pk, **(config or {})},
        )
        transaction.on_commit(lambda: _queue(run))
    return run


def _queue(run: ValidationRun | PaperTradingRun) -> None:
    if isinstance(run, ValidationRun):
        from models_registry.tasks.backtest import run_validation as task
    else:
        from models_registry.tasks.paper import run_paper_trading as task
    result = task.delay(run.pk)
    type(run).objects.filter(pk=run.pk).update(task_id=result.id)


def run_mark_running(run: ValidationRun | PaperTradingRun, *, task_id: str = "") -> bool:
    """Claim a queued run for this task. False if another delivery already has it."""
    claimed = (
        type(run)
        .objects.filter(pk=run.pk, status=RunStatus.QUEUED)
        .update(status=RunStatus.RUNNING, task_id=task_id or run.task_id)
    )
    return claimed == 1


def validation_run_complete(*, run: ValidationRun, outcome: RunOutcome) -> ValidationRun:
    """Record a finished validation; a passing one validates the version."""
    with transaction.atomic():
        run = ValidationRun.objects.select_for_update().get(pk=run.pk)
        if run.status in (RunStatus.PASSED, RunStatus.FAILED, RunStatus.ERROR):
            return run  # recorded already by an earlier delivery of the same task
        _apply_outcome(run, outcome)
        run.in_sample = outcome.in_sample
        run.exploratory = outcome.exploratory
        run.exploratory_reasons = outcome.exploratory_reasons
        run.benchmark_metrics = outcome.benchmark_metrics
        run.drift = outcome.drift
        run.save()
        audit_event_record(
            event_type="validation_run_recorded",
            actor=run.requested_by,
            obj=run,
            data={
                "passed": run.passed,
                "failed_gates": _failed(outcome),
                "in_sample": run.in_sample,
                "exploratory_reasons": run.exploratory_reasons,
            },
        )
        # Same transaction: no reader ever sees a passed run on a version still 'trained'.
        # An exploratory run (lower costs, another window) is recorded but never moves it.
        if run.passed and run.kind == ValidationRun.KIND_BACKTEST and not run.exploratory:
            _advance(
                run,
                lambda: lifecycle.model_version_validate(
                    model_version=run.model_version, validation_run=run, actor=run.requested_by
                ),
                ModelState.TRAINED,
            )
    return run


def paper_run_complete(*, run: PaperTradingRun, outcome: RunOutcome) -> PaperTradingRun:
    """Record a finished paper run; a passing one marks the version paper-tested."""
    with transaction.atomic():
        run = PaperTradingRun.objects.select_for_update().get(pk=run.pk)
        if run.status in (RunStatus.PASSED, RunStatus.FAILED, RunStatus.ERROR):
            return run
        _apply_outcome(run, outcome)
        run.bars = outcome.bars
        run.trades = outcome.trades
        run.divergence = outcome.divergence
        run.period_start = outcome.window_start
        run.period_end = outcome.window_end
        run.save()
        audit_event_record(
            event_type="paper_run_recorded",
            actor=run.requested_by,
            obj=run,
            data={
                "passed": run.passed,
                "failed_gates": _failed(outcome),
                "divergence": run.divergence,
            },
        )
        if run.passed:
            _advance(
                run,
                lambda: lifecycle.model_version_mark_paper_tested(
                    model_version=run.model_version, paper_run=run, actor=run.requested_by
                ),
                ModelState.VALIDATED,
            )
    return run


def _advance(run: ValidationRun | PaperTradingRun, transition: Any, from_state: str) -> None:
    """Move the version on after a passing run; a refusal is logged, the run stays recorded."""
    version = ModelVersion.objects.select_for_update().get(pk=run.model_version_id)
    if version.state != from_state:
        return
    try:
        transition()  # its own atomic block is a savepoint inside the caller's transaction
    except RegistryError as exc:
        logger.warning("%s passed but %s did not move on: %s", run, version, exc)


def run_fail(*, run: ValidationRun | PaperTradingRun, error: str) -> None:
    """A run that could not produce figures (bad data, a broken model): recorded, state kept."""
    with transaction.atomic():
        locked = type(run).objects.select_for_update().get(pk=run.pk)
        if locked.status in (RunStatus.PASSED, RunStatus.FAILED, RunStatus.ERROR):
            return
        locked.status = RunStatus.ERROR
        locked.passed = False
        locked.error = error[:5000]
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "passed", "error", "finished_at"])
        audit_event_record(
            event_type=f"{'validation' if isinstance(run, ValidationRun) else 'paper'}_run_error",
            actor=locked.requested_by,
            obj=locked,
            data={"error": error[:500]},
        )


def _apply_outcome(run: ValidationRun | PaperTradingRun, outcome: RunOutcome) -> None:
    passed = (
        outcome.passed
        and not outcome.in_sample
        and all(g.get("passed") for g in outcome.gate_results)
    )
    if run.model_version.allow_short_history:
        passed = False
        outcome.gate_results = [
            *outcome.gate_results,
            {
                "name": "enough_history",
                "passed": False,
                "value": "allow_short_history",
                "threshold": "6 months",
            },
        ]
    run.status = RunStatus.PASSED if passed else RunStatus.FAILED
    run.passed = passed
    run.metrics = outcome.metrics
    run.gate_results = outcome.gate_results
    run.config = {**run.config, **outcome.config}
    run.data_content_hash = outcome.data_content_hash
    run.report_dir = outcome.report_dir
    run.plot_file = outcome.plot_file
    run.finished_at = timezone.now()
    if isinstance(run, ValidationRun):
        run.window_start = outcome.window_start
        run.window_end = outcome.window_end


def _failed(outcome: RunOutcome) -> list[str]:
    return [str(g.get("name")) for g in outcome.gate_results if not g.get("passed")]
