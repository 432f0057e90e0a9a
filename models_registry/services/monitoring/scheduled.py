"""Scheduled re-validation of what runs in production: one run per version and slot, judged.

Celery beat calls ``revalidate_production`` daily (through the tasks in
``models_registry.tasks.monitoring``). Each in-production version is backtested on bars it
has never been judged on: the window starts after its training data and after its
previous scheduled window, and ends at the last stored bar, so every scheduled run is
out-of-sample by construction and no bar is judged twice. The run is checked against the
version's validation gates and against drift rules relative to its baseline (the passing
out-of-sample validation that let it into production), and the engine's journal from each
production target is compared trade by trade with a backtest over the same bars.

A failing run flags the version ``degraded`` (its lifecycle state stays ``in_production``:
health is not the protected state, and rolling back stays a human decision) and suspends
its approval, so it cannot be deployed again anywhere until someone approves it anew.
A later passing run shows it ``recovered``; the approval is not restored.

A slot (the UTC date for the daily run, ``wf-<ISO week>`` for the weekly walk-forward
report) makes at most one run per version: beat firing twice or a redelivered task finds
the existing run, and the database's unique constraint settles a race.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction

from engine.backtest.report import json_safe
from models_registry.gates import gates_for
from models_registry.models import ModelState, ModelVersion, RunStatus, ValidationRun
from models_registry.services.audit import audit_event_record
from models_registry.services.monitoring.drift import drift_rules, live_rule, walk_forward_summary
from models_registry.services.monitoring.health import (
    model_version_flag_degraded,
    model_version_mark_passing,
)
from models_registry.services.monitoring.live import STRATEGY, live_comparison
from models_registry.services.monitoring.window import (
    WindowUnavailable,
    baseline_run,
    daily_slot,
    scheduled_window,
    walk_forward_window,
)
from models_registry.services.runs import run_claim, validation_run_complete
from models_registry.services.validation import (
    ValidationOptions,
    validation_backtest_for_run,
    validation_outcome,
    validation_report_publish,
)

logger = logging.getLogger(__name__)


@dataclass
class ScheduledResult:
    """What one scheduled slot of one version came to: a run, or the reason there is none."""

    model_version_id: int
    slot: str
    run: ValidationRun | None = None
    created: bool = False
    skipped: str = ""

    def to_dict(self) -> dict[str, Any]:
        run = self.run
        version = ModelVersion.objects.get(pk=self.model_version_id)
        return {
            "model_version": self.model_version_id,
            "version": str(version),
            "slot": self.slot,
            "health": version.health,
            "created": self.created,
            "skipped": self.skipped,
            "run": None
            if run is None
            else {
                "id": run.pk,
                "status": run.status,
                "passed": run.passed,
                "window_start": run.window_start.isoformat() if run.window_start else None,
                "window_end": run.window_end.isoformat() if run.window_end else None,
                "failed_gates": [g.get("name") for g in run.gate_results if not g.get("passed")],
                "error": run.error,
            },
        }


def _existing_slot_run(version: ModelVersion, slot: str) -> ValidationRun | None:
    return ValidationRun.objects.filter(model_version=version, scheduled_slot=slot).first()


def _create_slot_run(
    version: ModelVersion, slot: str, options: ValidationOptions, task_id: str
) -> tuple[ValidationRun, bool]:
    """Get or create the slot's run, claimed (running) by this call when it created it.

    The run is born queued like every run and claimed at once, in the same transaction:
    no row is ever inserted already running.
    """
    try:
        with transaction.atomic():
            run = ValidationRun.objects.create(
                model_version=version,
                kind=ValidationRun.KIND_SCHEDULED,
                strategy=options.strategy,
                scheduled_slot=slot,
                config=options.to_config(),
                task_id=task_id,
            )
            audit_event_record(
                event_type="scheduled_validation_started",
                obj=run,
                data={"version": version.pk, "slot": slot, "start": options.start,
                      "end": options.end},
            )  # fmt: skip
            claim = run_claim(run, task_id=task_id)
            if claim.job is None:
                raise RuntimeError(f"could not claim the run it just created: {claim.reason}")
            run = claim.job
    except IntegrityError:
        # Another delivery of the same slot won the race: its run is the slot's run.
        existing = _existing_slot_run(version, slot)
        if existing is None:
            raise
        return existing, False
    return run, True


def _is_own_redelivery(run: ValidationRun, task_id: str) -> bool:
    """The same task message delivered again after its worker died mid-run (acks_late)."""
    return bool(task_id) and run.status == RunStatus.RUNNING and run.task_id == task_id


def scheduled_validation(
    *,
    model_version: ModelVersion,
    slot: str,
    now: datetime | None = None,
    task_id: str = "",
    data_dir: Path | None = None,
    walk_forward: int = 1,
) -> ScheduledResult:
    """Run (or find) the scheduled validation of ``slot``; a skipped slot says why."""
    result = ScheduledResult(model_version.pk, slot)
    version = ModelVersion.objects.get(pk=model_version.pk)
    existing = _existing_slot_run(version, slot)
    if existing is not None and not _is_own_redelivery(existing, task_id):
        result.run = existing
        return result
    if version.state != ModelState.IN_PRODUCTION:
        result.skipped = f"{version} is {version.get_state_display().lower()}, not in production"
        logger.info("scheduled validation %s skipped: %s", slot, result.skipped)
        return result
    try:
        if walk_forward > 1:
            window = walk_forward_window(version, walk_forward, data_dir)
        else:
            window = scheduled_window(version, data_dir)
    except WindowUnavailable as exc:
        result.skipped = str(exc)
        logger.info("scheduled validation of %s, slot %s, skipped: %s", version, slot, exc)
        return result
    options = ValidationOptions(
        strategy=STRATEGY,
        start=window.start.isoformat(),
        end=window.stop.isoformat(),
        walk_forward=walk_forward,
    )
    if existing is not None:
        run, result.created = existing, False
    else:
        run, result.created = _create_slot_run(version, slot, options, task_id)
        if not result.created:
            result.run = run
            return result
    result.run = _execute(run, version, options, walk_forward > 1, data_dir)
    return result


def scheduled_validation_run(
    *, model_version: ModelVersion, slot: str, now: datetime | None = None
) -> ValidationRun | None:
    """The slot's run (created and executed once), or None when there were too few new bars."""
    return scheduled_validation(model_version=model_version, slot=slot, now=now).run


def _execute(
    run: ValidationRun,
    version: ModelVersion,
    options: ValidationOptions,
    is_report: bool,
    data_dir: Path | None,
) -> ValidationRun:
    computed = validation_backtest_for_run(run, options=options, data_dir=data_dir)
    if computed is None:
        return ValidationRun.objects.get(pk=run.pk)
    report_dir = validation_report_publish(computed.report_dir, computed, run)
    outcome = validation_outcome(computed, report_dir)
    drift_gates = gates_for(version.name, "drift")
    baseline = baseline_run(version)
    if is_report:
        outcome.drift = {"walk_forward": walk_forward_summary(outcome.metrics)}
    else:
        rules = drift_rules(outcome.metrics, baseline.metrics if baseline else None, drift_gates)
        live = live_comparison(version, data_dir)
        found = live_rule(live, drift_gates)
        outcome.gate_results = [*outcome.gate_results, *rules, *([found] if found else [])]
        outcome.drift = {
            "baseline_run": baseline.pk if baseline else None,
            "baseline": {k: (baseline.metrics or {}).get(k) for k in _DRIFT_METRICS}
            if baseline
            else None,
            "now": {k: outcome.metrics.get(k) for k in _DRIFT_METRICS},
            "rules": rules,
            "live": live,
        }
    outcome.drift = json_safe(outcome.drift)
    with transaction.atomic():
        recorded = validation_run_complete(run=run, outcome=outcome)
        if not is_report:
            _judge(version, recorded)
    return ValidationRun.objects.get(pk=recorded.pk)


_DRIFT_METRICS = ("sharpe", "win_rate", "max_drawdown", "total_return", "n_trades")


def _judge(version: ModelVersion, run: ValidationRun) -> None:
    """Move the window on and the health with the run's verdict (inside the record's txn)."""
    locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if run.window_end and (
        locked.last_scheduled_window_end is None
        or run.window_end > locked.last_scheduled_window_end
    ):
        locked.last_scheduled_window_end = run.window_end
        locked.save(update_fields=["last_scheduled_window_end"])
    # An exploratory run (a process whose settings disagree with the policy in force) cannot
    # certify health; a failure under the policy in force still flags the version (safe side).
    if run.status == RunStatus.PASSED and not run.exploratory:
        model_version_mark_passing(model_version=locked, validation_run=run)
    elif run.status == RunStatus.FAILED:
        failed = [g for g in run.gate_results if not g.get("passed")]
        reason = "; ".join(_failed_gate_text(g) for g in failed)
        model_version_flag_degraded(
            model_version=locked,
            validation_run=run,
            reason=f"scheduled run #{run.pk} ({run.scheduled_slot}) failed: {reason}",
        )


def revalidate_production(now: datetime | None = None) -> list[ScheduledResult]:
    """The daily run of every in-production version, slot = the UTC date; one failing
    version is logged and does not stop the others."""
    slot = daily_slot(now)
    results: list[ScheduledResult] = []
    for version in ModelVersion.objects.filter(state=ModelState.IN_PRODUCTION).order_by("pk"):
        try:
            results.append(scheduled_validation(model_version=version, slot=slot, now=now))
        except Exception as exc:
            logger.exception("scheduled validation of %s crashed", version)
            results.append(ScheduledResult(version.pk, slot, skipped=f"error: {exc}"))
    return results


def _failed_gate_text(gate: dict[str, Any]) -> str:
    """``max_sharpe_drop: 1.74 (limit 1.00)``: numbers as people read them, never 1.7433015115."""
    from models_registry.verdicts import threshold_text

    name = str(gate.get("name") or "?")
    value = gate.get("value")
    shown = threshold_text(name, value) if isinstance(value, int | float) else str(value)
    return f"{name}: {shown} (limit {threshold_text(name, gate.get('threshold'))})"
