"""{% load registry_power %}: the power of a version's validation evidence, in words (#28)."""

from __future__ import annotations

from typing import Any

from django import template

from models_registry import verdicts
from models_registry.models import ModelVersion, RunStatus, ValidationRun

register = template.Library()


@register.simple_tag
def evidence_power(version: ModelVersion | None) -> dict[str, Any] | None:
    """The newest finished validation run of `version` that states its power, and that power.

    A policy run is preferred to an exploratory one: it is the evidence the gate judged.
    """
    if version is None or getattr(version, "pk", None) is None:
        return None
    runs = ValidationRun.objects.filter(
        model_version=version,
        kind=ValidationRun.KIND_BACKTEST,
        status__in=(RunStatus.PASSED, RunStatus.FAILED),
    ).order_by("exploratory", "-created_at", "-id")
    for run in runs.only("pk", "metrics", "exploratory", "config")[:20]:
        power = (run.metrics or {}).get("power")
        if isinstance(power, dict) and power.get("sentence"):
            folds = (run.metrics or {}).get("refit_folds") or []
            reproduction = verdicts.run_reproduction(run) if folds else None
            return {
                "run": run,
                "power": power,
                "folds": len(folds),
                "reproduction": reproduction.sentence() if reproduction else "",
                "reproduces": bool(reproduction and not reproduction.warns),
            }
    return None
