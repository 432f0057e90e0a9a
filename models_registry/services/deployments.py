"""Deployment requests and their outcomes: the registry's side of deployment/."""

from __future__ import annotations

from models_registry.models import (
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    ModelVersion,
)


def live_version_on_target(target: DeploymentTarget) -> ModelVersion | None:
    """The version the registry believes runs on ``target``: its last successful deployment."""
    last = (
        Deployment.objects.filter(target=target, status=DeploymentStatus.SUCCEEDED)
        .select_related("model_version")
        .order_by("-finished_at", "-id")
        .first()
    )
    return last.model_version if last else None
