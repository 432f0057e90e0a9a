"""What reads hosts about a target's attention: the deployer's acknowledgement and the beat.

Both need a host check over SSH (``host_checks``), which needs the deployments service,
which needs ``attention`` for its refusals: so they live here, above all three, and
``attention`` stays a module of flags and refusals that imports no other service.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from models_registry.models import (
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    RegistryError,
    TargetAttention,
)
from models_registry.services.attention import (
    DEPLOY_PERMISSION,
    AcknowledgeRefused,
    attention_raise_for_mismatch,
    open_attention,
    unresolved_needs_attention,
)
from models_registry.services.audit import audit_event_record
from models_registry.services.host_checks import host_check_summary, target_host_check

# --------------------------------------------------------------------------- acknowledging


def target_attention_acknowledge(
    *, target: DeploymentTarget, acknowledged_by: User, comment: str
) -> list[TargetAttention]:
    """Close every open flag of ``target`` after a host check shows it consistent."""
    if not acknowledged_by.has_perm(DEPLOY_PERMISSION):
        raise AcknowledgeRefused(
            f"{acknowledged_by.get_username()} may not acknowledge: needs the deployer role."
        )
    if not comment.strip():
        raise AcknowledgeRefused("an acknowledgement needs a comment saying what was checked.")
    if not open_attention(target):
        raise AcknowledgeRefused(f"target {target.name} has nothing to acknowledge.")
    # SSH is slow: the hosts are read outside the transaction, and recorded (host_check).
    report, check = target_host_check(target=target, actor=acknowledged_by, source="acknowledge")
    problem = inconsistency(report)
    if problem:
        audit_event_record(
            event_type="target_attention_acknowledge_refused",
            actor=acknowledged_by,
            obj=target,
            data={"reason": problem, "host_check": check.pk},
        )
        raise AcknowledgeRefused(
            f"target {target.name} is not consistent ({problem}): repair the hosts first."
        )
    return _close_flags(target, acknowledged_by, comment.strip(), check.pk)


def inconsistency(report: dict[str, Any]) -> str:
    """Why a host check does not show the target serving the registry's version ("" if it
    does)."""
    if report.get("active_deployment"):
        return f"deployment {report['active_deployment']} is in progress"
    hosts = report.get("hosts") or {}
    halted = [label for label, host in hosts.items() if host.get("halted")]
    if halted:
        return f"engine halted by its kill switch on {', '.join(sorted(halted))}"
    wrong = [label for label, host in hosts.items() if not host.get("matches_registry")]
    if not hosts or wrong:
        return f"hosts not serving the registry's version: {', '.join(sorted(wrong)) or 'none'}"
    costs = [f"{label}: {host['costs_problem']}" for label, host in sorted(hosts.items())
             if host.get("costs_problem")]  # fmt: skip
    if costs:
        return "engines not trading at the shipped policy costs: " + "; ".join(costs)
    return ""


def _close_flags(
    target: DeploymentTarget, user: User, comment: str, check_id: int
) -> list[TargetAttention]:
    with transaction.atomic():
        DeploymentTarget.objects.select_for_update().get(pk=target.pk)
        now = timezone.now()
        closed: list[TargetAttention] = []
        for deployment_id in unresolved_needs_attention(target):
            flag = TargetAttention.objects.filter(
                target=target, deployment_id=deployment_id, acknowledged_at__isnull=True
            ).first() or TargetAttention(
                # A needs-attention deployment from before flags existed.
                target=target,
                deployment_id=deployment_id,
                kind=TargetAttention.KIND_DEPLOYMENT,
                reason=Deployment.objects.get(pk=deployment_id).error,
            )
            closed.append(flag)
        closed += list(
            TargetAttention.objects.select_for_update().filter(
                target=target, deployment__isnull=True, acknowledged_at__isnull=True
            )
        )
        if not closed:
            raise AcknowledgeRefused(f"target {target.name} has nothing to acknowledge.")
        for flag in closed:
            flag.acknowledged_by = user
            flag.acknowledged_at = now
            flag.comment = comment
            flag.save()
        audit_event_record(
            event_type="target_attention_acknowledged",
            actor=user,
            obj=target,
            data={
                "attention": [flag.pk for flag in closed],
                "deployments": [flag.deployment_id for flag in closed if flag.deployment_id],
                "comment": comment,
                "host_check": check_id,
                "old_status": DeploymentStatus.NEEDS_ATTENTION,
                "new_status": "acknowledged",
            },
        )
    return closed


# --------------------------------------------------------------------------- the beat


def production_hosts_check() -> list[dict[str, Any]]:
    """Beat: read every production target's hosts and flag the ones not serving the
    registry's version (or halted). Targets mid-deploy, or never deployed, are skipped."""
    results: list[dict[str, Any]] = []
    for target in DeploymentTarget.objects.filter(environment="production").order_by("id"):
        try:
            report, _ = target_host_check(target=target, actor=None, source="beat")
        except RegistryError as exc:
            results.append({"target": target.name, "skipped": str(exc)})
            continue
        if report.get("active_deployment") or report.get("registry_sha256") is None:
            results.append({"target": target.name, "skipped": "deploying or never deployed"})
            continue
        problem = inconsistency(report)
        flag = None
        if problem:
            flag = attention_raise_for_mismatch(
                target=target, reason=problem, report=host_check_summary(report)["hosts"]
            )
        results.append(
            {"target": target.name, "problem": problem, "flagged": flag.pk if flag else None}
        )
    return results
