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
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from deployment import crash_points
from models_registry import dispatch
from models_registry.events import EventType
from models_registry.models import (
    FINISHED_RUN_STATUSES,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RegistryError,
    RunStatus,
    ValidationRun,
)
from models_registry.services import jobs, lifecycle
from models_registry.services.audit import audit_event_record
from models_registry.services.jobs import run_fail as run_fail  # re-exported: callers use runs.<it>
from models_registry.services.trials import trial_record_for_run

logger = logging.getLogger(__name__)

# A run function hands back the kind of run it was given.
RunT = TypeVar("RunT", bound=ValidationRun | PaperTradingRun)


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
    # The policy the run was judged under (models_registry.policy.policy_reference).
    policy_id: int | None = None
    policy_hash: str = ""


def validation_run_request(
    *,
    model_version: ModelVersion,
    requested_by: User | None,
    config: dict[str, Any] | None = None,
) -> ValidationRun:
    return _run_request(
        ValidationRun, model_version, requested_by, config,
        needs=ModelState.TRAINED, what="validated", event_type="validation_requested",
    )  # fmt: skip


def paper_run_request(
    *,
    model_version: ModelVersion,
    requested_by: User | None,
    config: dict[str, Any] | None = None,
) -> PaperTradingRun:
    return _run_request(
        PaperTradingRun, model_version, requested_by, config,
        needs=ModelState.VALIDATED, what="replayed", event_type="paper_run_requested",
    )  # fmt: skip


def comparison_run_request(
    *,
    model_version: ModelVersion,
    requested_by: User | None,
    config: dict[str, Any],
) -> ValidationRun:
    """A validation run for the admin's Compare, of a version in any state.

    ``config`` must ask for a comparison (``"comparison": True``): the run is then
    exploratory whatever its window, so it is counted as a trial and never moves the
    version. Callers (``services.comparison``) hold the version's row lock and check for a
    run they can reuse first.
    """
    if config.get("comparison") is not True:
        raise ValueError("a comparison run must say so in its config ('comparison': True)")
    return _run_request(
        ValidationRun, model_version, requested_by, config,
        needs=None, what="compared", event_type="validation_requested",
    )  # fmt: skip


def _run_request(
    model: Any,
    version: ModelVersion,
    requested_by: User | None,
    config: dict[str, Any] | None,
    *,
    needs: str | None,
    what: str,
    event_type: str,
) -> Any:
    """Create a queued run and hand it to its task once the row is committed.

    ``needs``: the state the version must be in (None: any, for exploratory comparisons).
    """
    if needs is not None and version.state != needs:
        raise lifecycle.TransitionRefused(
            f"{version} is {version.get_state_display().lower()}; "
            f"only a {ModelState(needs).label.lower()} version is {what}."
        )
    actor = requested_by if requested_by and requested_by.is_authenticated else None
    with transaction.atomic():
        # The task id is the row's from the start: a worker can tell its own message
        # from another's, and reconcile can tell a run that never got a task.
        run = model.objects.create(
            model_version=version,
            requested_by=actor,
            config=config or {},
            task_id=jobs.new_task_id(),
        )
        audit_event_record(
            event_type=event_type,
            actor=requested_by,
            obj=run,
            data={"version": version.pk, "task_id": run.task_id, **(config or {})},
        )
        transaction.on_commit(lambda: _queue(run))
    return run


def _queue(run: ValidationRun | PaperTradingRun) -> None:
    """Send the run's own task; a broker that refuses it ends the run (audited), not 'queued'."""
    name = dispatch.RUN_VALIDATION if isinstance(run, ValidationRun) else dispatch.RUN_PAPER_TRADING
    try:
        dispatch.task_send(name, args=(run.pk,), task_id=run.task_id)
    except Exception as exc:  # the broker's errors vary by transport
        logger.exception("could not queue %s", run)
        run_fail(run=run, error=f"could not queue its task ({type(exc).__name__}: {exc})")


def run_claim(run: RunT, *, task_id: str = "") -> jobs.Claim[RunT]:
    """The worker's claim on its run (see ``jobs.job_claim``)."""
    event_type = (
        EventType.VALIDATION_RUN_STARTED
        if isinstance(run, ValidationRun)
        else EventType.PAPER_RUN_STARTED
    )
    return jobs.job_claim(model=type(run), pk=run.pk, task_id=task_id, event_type=event_type)


def run_mark_running(run: ValidationRun | PaperTradingRun, *, task_id: str = "") -> bool:
    """Claim a queued run for this task (or resume it on a redelivery of the same task)."""
    claim = run_claim(run, task_id=task_id)
    if claim.job is not None:
        run.status = claim.job.status
        run.task_id = claim.job.task_id
    return claim.job is not None


def validation_run_complete(*, run: ValidationRun, outcome: RunOutcome) -> ValidationRun:
    """Record a finished validation; a passing one validates the version."""
    crash_points.reached("validation_computed")  # test-only: kill -9 here when armed
    with transaction.atomic():
        _lock_version_of(run)
        run = ValidationRun.objects.select_for_update().get(pk=run.pk)
        if run.status in FINISHED_RUN_STATUSES:
            return run  # recorded already by an earlier delivery of the same task
        status, fields = _outcome_fields(run, outcome)
        fields.update(
            in_sample=outcome.in_sample,
            benchmark_metrics=outcome.benchmark_metrics,
            drift=outcome.drift,
            exploratory=outcome.exploratory,
            exploratory_reasons=outcome.exploratory_reasons,
            window_start=outcome.window_start,
            window_end=outcome.window_end,
        )
        run = jobs.job_transition(
            job=run,
            to=status,
            event_type="validation_run_recorded",
            fields=fields,
            data={
                "passed": fields["passed"],
                "failed_gates": _failed(outcome),
                "in_sample": outcome.in_sample,
                "exploratory": outcome.exploratory,
                "exploratory_reasons": outcome.exploratory_reasons,
                "policy_hash": outcome.policy_hash,
            },
        )
        trial_record_for_run(run)  # every finished attempt counts for later DSRs (#12)
        crash_points.reached("validation_recorded")  # the transaction dies with the worker
        # Same transaction: no reader ever sees a passed run on a version still 'trained'.
        # An exploratory run (lower costs, another window) is recorded but never moves it.
        if run.passed and run.kind == ValidationRun.KIND_BACKTEST and not outcome.exploratory:
            _advance(
                run,
                lambda: lifecycle.model_version_validate(
                    model_version=run.model_version, validation_run=run, actor=run.requested_by
                ),
                ModelState.TRAINED,
            )
    return run


def paper_run_complete(*, run: PaperTradingRun, outcome: RunOutcome) -> PaperTradingRun:
    """Record a finished replay or forward run; a passing forward run marks the version
    paper-tested."""
    with transaction.atomic():
        _lock_version_of(run)
        run = PaperTradingRun.objects.select_for_update().get(pk=run.pk)
        if run.status in FINISHED_RUN_STATUSES:
            return run
        status, fields = _outcome_fields(run, outcome)
        fields.update(
            bars=outcome.bars,
            trades=outcome.trades,
            divergence=outcome.divergence,
            period_start=outcome.window_start,
            period_end=outcome.window_end,
            exploratory=outcome.exploratory,
            exploratory_reasons=outcome.exploratory_reasons,
        )
        run = jobs.job_transition(
            job=run,
            to=status,
            event_type="paper_run_recorded",
            fields=fields,
            data={
                "passed": fields["passed"],
                "failed_gates": _failed(outcome),
                "divergence": outcome.divergence,
                "exploratory": outcome.exploratory,
                "exploratory_reasons": outcome.exploratory_reasons,
                "policy_hash": outcome.policy_hash,
            },
        )
        # A replay is a pre-check: staging asks for it, it moves nothing. Only a forward
        # run on the staging target marks the version paper-tested.
        if run.passed and not outcome.exploratory and run.mode == PaperTradingRun.MODE_FORWARD:
            _advance(
                run,
                lambda: lifecycle.model_version_mark_paper_tested(
                    model_version=run.model_version, paper_run=run, actor=run.requested_by
                ),
                ModelState.STAGED,
            )
    return run


def _lock_version_of(run: ValidationRun | PaperTradingRun) -> None:
    """The version's row before the run's (docs/jobs.md, lock order): recording a run may
    move the version, and a reject or a suspension takes the version then the audit chain;
    taking the version after this run's first audit event could deadlock with them."""
    ModelVersion.objects.select_for_update().filter(pk=run.model_version_id).get()


def _advance(run: ValidationRun | PaperTradingRun, transition: Any, from_state: str) -> None:
    """Move the version on after a passing run; a refusal is logged, the run stays recorded."""
    version = ModelVersion.objects.select_for_update().get(pk=run.model_version_id)
    if version.state != from_state:
        return
    try:
        transition()  # its own atomic block is a savepoint inside the caller's transaction
    except RegistryError as exc:
        logger.warning("%s passed but %s did not move on: %s", run, version, exc)


def _outcome_fields(
    run: ValidationRun | PaperTradingRun, outcome: RunOutcome
) -> tuple[str, dict[str, Any]]:
    """The status and the recorded figures of a finished run."""
    passed = (
        outcome.passed
        and not outcome.in_sample
        and all(g.get("passed") for g in outcome.gate_results)
    )
    gate_results = outcome.gate_results
    if run.model_version.allow_short_history:
        passed = False
        gate_results = [
            *gate_results,
            {
                "name": "enough_history",
                "passed": False,
                "value": "allow_short_history",
                "threshold": "6 months",
            },
        ]
        outcome.gate_results = gate_results
    fields = {
        "passed": passed,
        "metrics": outcome.metrics,
        "gate_results": gate_results,
        "config": {**run.config, **outcome.config},
        "data_content_hash": outcome.data_content_hash,
        "report_dir": outcome.report_dir,
        "plot_file": outcome.plot_file,
        "policy_id": outcome.policy_id,
        "policy_hash": outcome.policy_hash,
        "finished_at": timezone.now(),
    }
    return (RunStatus.PASSED if passed else RunStatus.FAILED), fields


def _failed(outcome: RunOutcome) -> list[str]:
    return [str(g.get("name")) for g in outcome.gate_results if not g.get("passed")]
