"""The inbox on the admin home: what waits for this user's roles, each item with a link.

Read-only. Approvers see staged versions they may approve (four eyes: not their own)
and approved versions whose approval was suspended; deployers see approved versions
to deploy and deployments that need attention or failed; engineers see their runs that
failed or finished in the last week. A fixed number of queries, at most ``LIMIT``
items per section.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from models_registry import formatting
from models_registry.models import (
    ApprovalSuspension,
    Deployment,
    DeploymentStatus,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    ValidationRun,
)

LIMIT = 10
RECENT = timedelta(days=7)
ATTENTION = (DeploymentStatus.NEEDS_ATTENTION, DeploymentStatus.FAILED)


def _action_url(version: ModelVersion, action: str) -> str:
    return reverse("admin:models_registry_version_action", args=[version.pk, action])


def _version_url(version: ModelVersion) -> str:
    return reverse("admin:models_registry_modelversion_change", args=[version.pk])


def _suspended() -> list[ModelVersion]:
    """Approved or live versions whose latest approval is suspended (a new decision is due)."""
    from models_registry.services.lifecycle import current_approval

    candidates = ModelVersion.objects.filter(
        state__in=(ModelState.APPROVED, ModelState.IN_PRODUCTION),
        pk__in=ApprovalSuspension.objects.values("approval__model_version_id"),
    ).order_by("created_at")[:LIMIT]
    return [v for v in candidates if current_approval(v) is None]


def approvals_waiting(user: User) -> list[dict[str, str]]:
    staged = (
        ModelVersion.objects.filter(state=ModelState.PAPER_TESTED)
        .exclude(created_by=user)
        .exclude(approval_requested_by=user)
        .order_by("created_at")[:LIMIT]
    )
    items = [
        {"text": f"{v} waits for your approval", "url": _action_url(v, "approve_versions")}
        for v in staged
    ]
    items += [
        {
            "text": f"{v}'s approval is suspended: it needs a new decision",
            "url": _version_url(v),
        }
        for v in _suspended()
    ]
    return items


def deploys_waiting() -> list[dict[str, str]]:
    suspended = {v.pk for v in _suspended()}
    approved = [
        v
        for v in ModelVersion.objects.filter(state=ModelState.APPROVED).order_by("created_at")[
            :LIMIT
        ]
        if v.pk not in suspended
    ]
    items = [
        {
            "text": f"{v} is approved: deploy it to production",
            "url": _action_url(v, "deploy_versions"),
        }
        for v in approved
    ]
    attention = (
        Deployment.objects.filter(status__in=ATTENTION, created_at__gte=timezone.now() - RECENT)
        .select_related("target", "model_version")
        .order_by("-created_at")[:LIMIT]
    )
    items += [
        {
            "text": f"{d.kind} #{d.pk} of {d.model_version} to {d.target.name}: "
            f"{d.get_status_display().lower()}",
            "url": reverse("admin:models_registry_deployment_change", args=[d.pk]),
            "urgent": "yes" if d.status == DeploymentStatus.NEEDS_ATTENTION else "",
        }
        for d in attention
    ]
    return items


def runs_finished(user: User) -> list[dict[str, str]]:
    since = timezone.now() - RECENT
    mine = Q(requested_by=user) & (
        Q(finished_at__gte=since)
        | Q(status__in=(RunStatus.FAILED, RunStatus.ERROR), created_at__gte=since)
    )
    items = []
    for model, what, admin_name in (
        (ValidationRun, "validation run", "validationrun"),
        (PaperTradingRun, "paper run", "papertradingrun"),
    ):
        runs = (
            model.objects.filter(
                mine, status__in=(RunStatus.PASSED, RunStatus.FAILED, RunStatus.ERROR)
            )
            .select_related("model_version")
            .order_by("-finished_at", "-id")[:LIMIT]
        )
        items += [
            {
                "text": f"{what} #{r.pk} of {r.model_version}: {r.get_status_display().lower()}"
                f" ({formatting.utc(r.finished_at)})",
                "url": reverse(f"admin:models_registry_{admin_name}_change", args=[r.pk]),
                "urgent": "yes" if r.status != RunStatus.PASSED else "",
            }
            for r in runs
        ]
    return items


def inbox_for(user: Any) -> list[dict[str, Any]]:
    """The sections of this user's inbox, one per role they hold, in the order they act."""
    if not isinstance(user, User) or not user.is_active:
        return []
    sections = []
    if user.has_perm("models_registry.approve_modelversion"):
        sections.append({"title": "Approvals", "items": approvals_waiting(user)})
    if user.has_perm("models_registry.deploy_modelversion"):
        sections.append({"title": "Deploys and needs-attention", "items": deploys_waiting()})
    if user.has_perm("models_registry.validate_modelversion"):
        sections.append({"title": "Your runs (last 7 days)", "items": runs_finished(user)})
    return sections
