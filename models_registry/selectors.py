"""Reads shared by admin pages, commands and services.

A selector only reads: it never locks, writes or queues anything, so a service may call
one in the middle of a transition and a page may call one per request. Moving a read here
(rather than importing it from the service that happened to own it) keeps the services
from importing each other in a circle (see tests/registry/test_import_cycles.py).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count

from models_registry.events import EventType
from models_registry.models import (
    ACTIVE_DEPLOYMENT_STATUSES,
    Approval,
    AuditEvent,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    Environment,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    ValidationRun,
)


def event_type_counts() -> list[tuple[str, str, int]]:
    """Each catalogued event type, its meaning and how many events of it are on record."""
    # One GROUP BY over the indexed column, whatever the size of the trail.
    counts = dict(
        AuditEvent.objects.order_by()
        .values("event_type")
        .annotate(n=Count("id"))
        .values_list("event_type", "n")
    )
    return [(str(m.value), str(m.label), counts.get(m.value, 0)) for m in EventType]


def live_version_on_target(target: DeploymentTarget) -> ModelVersion | None:
    """The version the registry believes runs on ``target``: its last successful deployment."""
    last = (
        Deployment.objects.filter(target=target, status=DeploymentStatus.SUCCEEDED)
        .select_related("model_version")
        .order_by("-finished_at", "-id")
        .first()
    )
    return last.model_version if last else None


def active_deployment(target: DeploymentTarget) -> Deployment | None:
    """The target's queued or running deployment (the database holds at most one)."""
    return Deployment.objects.filter(target=target, status__in=ACTIVE_DEPLOYMENT_STATUSES).first()


def live_on_other_production_target(version: ModelVersion, deployment: Deployment) -> bool:
    """Whether ``version`` still runs on a production target other than ``deployment``'s."""
    targets = DeploymentTarget.objects.filter(environment=Environment.PRODUCTION).exclude(
        pk=deployment.target_id
    )
    return any(live_version_on_target(t) == version for t in targets)


def passing_validation_run(version: ModelVersion) -> ValidationRun | None:
    return (
        version.validation_runs.filter(
            status=RunStatus.PASSED, passed=True, in_sample=False, kind=ValidationRun.KIND_BACKTEST
        )
        .order_by("-created_at")
        .first()
    )


def passing_replay_run(version: ModelVersion) -> PaperTradingRun | None:
    """The latest passing replay pre-check (stored held-out bars, in-process)."""
    return (
        version.paper_runs.filter(
            status=RunStatus.PASSED, passed=True, mode=PaperTradingRun.MODE_REPLAY,
            exploratory=False,
        )
        .order_by("-created_at")
        .first()
    )  # fmt: skip


def passing_forward_run(version: ModelVersion) -> PaperTradingRun | None:
    """The latest passing forward paper run of this exact file on a staging target."""
    return (
        version.paper_runs.filter(
            status=RunStatus.PASSED,
            passed=True,
            mode=PaperTradingRun.MODE_FORWARD,
            target__environment=Environment.STAGING,
            config__model_sha256=version.onnx_sha256,
        )
        .order_by("-created_at")
        .first()
    )


def forward_run_of(version: ModelVersion) -> PaperTradingRun | None:
    """The version's latest forward paper run, whatever its status (pages show it live)."""
    return (
        version.paper_runs.filter(mode=PaperTradingRun.MODE_FORWARD)
        .select_related("target")
        .order_by("-created_at", "-id")
        .first()
    )


def passing_paper_run(version: ModelVersion) -> PaperTradingRun | None:
    """The evidence of paper trading: the forward run, else (pages) the replay pre-check."""
    return passing_forward_run(version) or passing_replay_run(version)


def successful_staging_deployment(version: ModelVersion) -> Deployment | None:
    return (
        version.deployments.filter(
            target__environment=Environment.STAGING,
            status=DeploymentStatus.SUCCEEDED,
            sha256=version.onnx_sha256,
            compatibility__passed=True,
        )
        .order_by("-finished_at")
        .first()
    )


def current_approval(version: ModelVersion) -> Approval | None:
    """The latest decision, if it approves this exact file and is not suspended."""
    latest = version.approvals.order_by("-decided_at", "-id").first()
    if latest is None or latest.decision != Approval.DECISION_APPROVED:
        return None
    if latest.sha256 != version.onnx_sha256 or latest.suspensions.exists():
        return None
    return latest


# The equity curves a run stored with its report (services.validation writes them).
EQUITY_CURVE_FILE = "equity_curve.json"


def stored_curve(run: ValidationRun | None) -> dict[str, Any] | None:
    """The curves the run stored with its report, or None (a run older than stored curves)."""
    if run is None or not run.report_dir:
        return None
    media = Path(settings.MEDIA_ROOT).resolve()
    path = (media / run.report_dir / EQUITY_CURVE_FILE).resolve()
    if not path.is_relative_to(media) or not path.is_file():
        return None
    return _read_curve(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _read_curve(path: str, mtime_ns: int) -> dict[str, Any]:
    # Keyed on the file's mtime: a run's curve is written once, so it is read once.
    return json.loads(Path(path).read_text())
