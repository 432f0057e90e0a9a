"""A target that needs attention takes no deploy until a deployer has looked.

Raised by a deployment that ended ``needs_attention`` (in its finishing transaction),
and by the scheduled host check when a production host does not serve the registry's
version. While one is open, every deploy and rollback request to the target is
refused with one line. ``target_attention_acknowledge`` closes them: it reads the
hosts first, and only a consistent target (every host serving the registry's
version, no engine halted) may be acknowledged. The acknowledgement is one declared
transition: the target row locked, the flags closed and one audit event, in one
transaction.

Event types (literal, for the catalogue): ``target_attention_raised``,
``target_attention_acknowledged``, ``target_attention_acknowledge_refused``.
"""

from __future__ import annotations

import logging
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
from models_registry.services.audit import audit_event_record

logger = logging.getLogger(__name__)

DEPLOY_PERMISSION = "models_registry.deploy_modelversion"


class AttentionOpen(RegistryError):
    """The target needs a deployer's acknowledgement before anything is deployed there."""


class AcknowledgeRefused(RegistryError):
    """The acknowledgement cannot be given now; the message says why."""


# --------------------------------------------------------------------------- reading


def acknowledged_deployment_ids(target: DeploymentTarget) -> list[int]:
    return list(
        TargetAttention.objects.filter(
            target=target, deployment__isnull=False, acknowledged_at__isnull=False
        ).values_list("deployment_id", flat=True)
    )


def open_attention(target: DeploymentTarget) -> list[str]:
    """One line per reason the target is blocked, oldest first."""
    from models_registry.services.deployments import unresolved_needs_attention

    lines = [f"deployment #{pk} ended NEEDS ATTENTION" for pk in unresolved_needs_attention(target)]
    mismatches = TargetAttention.objects.filter(
        target=target, deployment__isnull=True, acknowledged_at__isnull=True
    )
    lines += [
        f"host check at {flag.raised_at:%Y-%m-%d %H:%M} UTC: {flag.reason}" for flag in mismatches
    ]
    return lines


def refuse_while_attention_open(target: DeploymentTarget) -> None:
    lines = open_attention(target)
    if lines:
        raise AttentionOpen(
            f"target {target.name} needs attention ({lines[0]}): check its hosts "
            "(deployment_status) and acknowledge it (acknowledge_attention) before deploying."
        )


# --------------------------------------------------------------------------- raising


def attention_raise_for_deployment(deployment: Deployment, *, reason: str) -> TargetAttention:
    """Inside the deployment's finishing transaction: its ``deploy_finished`` event
    already says needs_attention, so no second event is written."""
    return TargetAttention.objects.create(
        target_id=deployment.target_id,
        deployment=deployment,
        kind=TargetAttention.KIND_DEPLOYMENT,
        reason=reason or "deployment ended needs_attention",
    )


def attention_raise_for_mismatch(
    *, target: DeploymentTarget, reason: str, report: dict[str, Any]
) -> TargetAttention | None:
    """A scheduled host check found the target not serving the registry's version: flag
    it (once while open) with one audit event, and tell the deployers."""
    with transaction.atomic():
        DeploymentTarget.objects.select_for_update().get(pk=target.pk)
        already = TargetAttention.objects.filter(
            target=target,
            kind=TargetAttention.KIND_HOST_MISMATCH,
            acknowledged_at__isnull=True,
        ).first()
        if already is not None:
            return None
        flag = TargetAttention.objects.create(
            target=target, kind=TargetAttention.KIND_HOST_MISMATCH, reason=reason
        )
        audit_event_record(
            event_type="target_attention_raised",
            obj=target,
            data={"attention": flag.pk, "kind": flag.kind, "reason": reason, "hosts": report},
        )
        transaction.on_commit(lambda: notify_deployers_of_attention(flag.pk), robust=True)
    return flag


def notify_deployers_of_attention(flag_id: int) -> int:
    from models_registry.services import notifications

    flag = TargetAttention.objects.select_related("target").get(pk=flag_id)
    recipients = notifications.deployers_emails()
    if not recipients:
        logger.warning("%s needs attention but no deployer has an e-mail", flag.target)
        return 0
    return notifications._send(
        f"[tradebot] NEEDS ATTENTION: {flag.target.name} does not serve the registry's version",
        (
            f"The scheduled host check of {flag.target.name} ({flag.target.environment}) "
            f"found: {flag.reason}\n\nNo deploy is accepted there until a deployer has "
            "checked the hosts (`manage.py deployment_status`) and acknowledged it "
            "(`manage.py acknowledge_attention`).\n"
        ),
        recipients,
    )


# --------------------------------------------------------------------------- acknowledging


def target_attention_acknowledge(
    *, target: DeploymentTarget, acknowledged_by: User, comment: str
) -> list[TargetAttention]:
    """Close every open flag of ``target`` after a host check shows it consistent."""
    from models_registry.services.host_checks import target_host_check

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
    return ""


def _close_flags(
    target: DeploymentTarget, user: User, comment: str, check_id: int
) -> list[TargetAttention]:
    from models_registry.services.deployments import unresolved_needs_attention

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
    from models_registry.services.host_checks import host_check_summary, target_host_check

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
