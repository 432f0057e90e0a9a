"""The fleet home on the admin index: per target, what it serves, how healthy, how it got there.

Read-only and SSH-free: what hosts serve comes from the last ``host_check`` audit event
(``services.host_checks``), never from a connection opened on page load. A fixed number
of queries whatever the number of targets, deployments or events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from django.db.models import CharField, OuterRef, Subquery
from django.db.models.functions import Cast
from django.urls import reverse

from models_registry import formatting
from models_registry.models import (
    AuditEvent,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    ModelVersion,
)
from models_registry.services.host_checks import HOST_CHECK_EVENT

if TYPE_CHECKING:  # django-stubs-ext is a dev requirement: types only, not at run time
    from django_stubs_ext import WithAnnotations


class _FleetAnnotations(TypedDict):
    """The ids each target row carries from its subqueries (None: no such row yet)."""

    served_id: int | None
    last_deployment_id: int | None
    check_id: int | None


def _annotated_targets() -> list[WithAnnotations[DeploymentTarget, _FleetAnnotations]]:
    deployments = Deployment.objects.filter(target=OuterRef("pk"))
    served = (
        deployments.filter(status=DeploymentStatus.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .values("model_version_id")[:1]
    )
    last = deployments.order_by("-created_at", "-id").values("id")[:1]
    check = (
        AuditEvent.objects.filter(
            event_type=HOST_CHECK_EVENT,
            object_type="DeploymentTarget",
            # object_id is text (it names rows of any table): compare as text, indexed.
            object_id=Cast(OuterRef("pk"), CharField()),
        )
        .order_by("-id")
        .values("id")[:1]
    )
    return list(
        DeploymentTarget.objects.annotate(
            served_id=Subquery(served), last_deployment_id=Subquery(last), check_id=Subquery(check)
        )
        .prefetch_related("hosts")
        .order_by("environment", "name")
    )


def fleet_rows() -> list[dict[str, Any]]:
    targets = _annotated_targets()
    versions = ModelVersion.objects.in_bulk([t.served_id for t in targets if t.served_id])
    last = Deployment.objects.select_related("model_version", "requested_by").in_bulk(
        [t.last_deployment_id for t in targets if t.last_deployment_id]
    )
    checks = AuditEvent.objects.in_bulk([t.check_id for t in targets if t.check_id])
    return [
        _row(target, versions.get(target.served_id), last.get(target.last_deployment_id),
             checks.get(target.check_id))
        for target in targets
    ]  # fmt: skip


def _row(
    target: DeploymentTarget,
    served: ModelVersion | None,
    last: Deployment | None,
    check: AuditEvent | None,
) -> dict[str, Any]:
    return {
        "target": target,
        "environment": target.get_environment_display(),
        "hosts": [str(h) for h in target.hosts.all()] or (["local"] if target.is_local else []),
        "served": served,
        "served_url": reverse("admin:models_registry_modelversion_change", args=[served.pk])
        if served
        else None,
        "health": served.get_health_display() if served else formatting.DASH,
        "health_code": served.health if served else "",
        "last_deployment": last,
        "last_deployment_url": reverse("admin:models_registry_deployment_change", args=[last.pk])
        if last
        else None,
        "last_outcome": last.get_status_display() if last else "never deployed",
        "last_failed": bool(last and last.status != DeploymentStatus.SUCCEEDED),
        "last_at": formatting.utc(last.finished_at or last.created_at) if last else formatting.DASH,
        "check": host_check_view(check, served),
    }


def host_check_view(check: AuditEvent | None, served: ModelVersion | None) -> dict[str, Any]:
    """The last observation of the hosts, and whether it contradicts the registry."""
    if check is None:
        return {"seen": False, "mismatch": False, "text": "hosts never checked"}
    data = check.data or {}
    served_sha = served.onnx_sha256 if served else None
    problems = [
        f"{label}: {_host_text(host)}"
        for label, host in sorted((data.get("hosts") or {}).items())
        if not host.get("matches_registry")
        or host.get("live_sha256") != served_sha
        or host.get("halted")
    ]
    if not data.get("hosts"):
        problems.append("the target has no host to check")
    stale = data.get("registry_sha256") != served_sha
    if stale:
        problems.append("deployed since this check: check again")
    return {
        "seen": True,
        "at": formatting.utc(check.event_time),
        "by": check.actor_repr,
        "mismatch": bool(problems),
        "text": "; ".join(problems) or "every host serves the registry's version",
        "event_id": check.pk,
    }


def _host_text(host: dict[str, Any]) -> str:
    if host.get("error"):
        return f"unreachable ({host['error']})"
    live = (host.get("live_sha256") or "nothing")[:12]
    if host.get("halted"):
        return f"engine HALTED by its kill switch ({live}): trading nothing"
    if host.get("serving_backup"):
        return f"serves the kept backup {host.get('serving_version')} ({live})"
    return f"serves {live}, not the registry's version"
