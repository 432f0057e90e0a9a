"""A child process of tests/registry/test_lock_order.py: one registry operation, on its
own database connection, started at a shared instant or paused at a named point.

``python -m tests.registry.lock_order_child ACTION JSON`` prints one JSON line: what the
operation ended with, or the exception it raised (a deadlock included).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import django


def _wait_until(instant: float) -> None:
    while time.time() < instant:
        time.sleep(0.001)


def _pause_at(point: str, marker: Path, seconds: float) -> None:
    """Hold the transaction at ``point`` (a crash point name) long enough for the rival to
    take whatever lock it takes first: the window a wrong lock order deadlocks in."""
    from deployment import crash_points

    def pause(name: str, **_kwargs: Any) -> None:
        if name == point:
            marker.write_text("paused")
            time.sleep(seconds)

    crash_points.reached = pause  # type: ignore[assignment]


def complete_validation(args: dict[str, Any]) -> dict[str, Any]:
    from models_registry.models import ValidationRun
    from models_registry.services.runs import RunOutcome, validation_run_complete

    _pause_at("validation_recorded", Path(args["marker"]), args["pause"])
    run = ValidationRun.objects.select_related("model_version").get(pk=args["run"])
    start = run.model_version.out_of_sample_from + timedelta(days=1)
    outcome = RunOutcome(
        window_start=start,
        window_end=start + timedelta(days=90),
        metrics={"sharpe": 1.2},
        gate_results=[{"name": "min_sharpe", "passed": True}],
        passed=True,
    )
    done = validation_run_complete(run=run, outcome=outcome)
    return {"status": done.status}


def reject(args: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from models_registry.models import ModelVersion
    from models_registry.services import lifecycle

    marker = Path(args["marker"])
    deadline = time.time() + 30
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.005)
    version = ModelVersion.objects.get(pk=args["version"])
    approver = get_user_model().objects.get(pk=args["approver"])
    lifecycle.model_version_reject(
        model_version=version, rejected_by=approver, comment="raced a finishing validation"
    )
    return {"state": ModelVersion.objects.get(pk=version.pk).state}


def claim_deployment(args: dict[str, Any]) -> dict[str, Any]:
    from models_registry.services import deployments

    _wait_until(args["at"])
    claim = deployments.deployment_claim_for_task(args["deployment"], task_id=args["task_id"])
    return {"claimed": claim.job is not None, "reason": claim.reason}


def suspend(args: dict[str, Any]) -> dict[str, Any]:
    from models_registry.models import ModelVersion, ValidationRun
    from models_registry.services import monitoring

    version = ModelVersion.objects.get(pk=args["version"])
    run = ValidationRun.objects.create(model_version=version, kind=ValidationRun.KIND_SCHEDULED)
    _wait_until(args["at"])
    monitoring.model_version_flag_degraded(
        model_version=version, validation_run=run, reason="raced a deploy claim"
    )
    return {"health": ModelVersion.objects.get(pk=version.pk).health}


ACTIONS = {
    "complete_validation": complete_validation,
    "reject": reject,
    "claim_deployment": claim_deployment,
    "suspend": suspend,
}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")
    django.setup()
    action, args = sys.argv[1], json.loads(sys.argv[2])
    try:
        result = {"ok": True, **ACTIONS[action](args)}
    except Exception as exc:  # reported to the test, which decides
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc(),
        }
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
