"""A target that needs attention takes no deploy until a deployer has looked.

Raised by a deployment that ended ``needs_attention`` (in its finishing transaction),
and by the scheduled host check when a production host does not serve the registry's
version. While one is open, every deploy and rollback request to the target is
refused with one line. ``attention_checks.target_attention_acknowledge`` closes them: it reads the
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

from django.db import transaction

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


def unresolved_needs_attention(target: DeploymentTarget) -> list[int]:
    """Ids of needs-attention deployments on the target that no later success has repaired."""
    last_success = (
        target.deployments.filter(status=DeploymentStatus.SUCCEEDED)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    flagged = target.deployments.filter(status=DeploymentStatus.NEEDS_ATTENTION)
    if last_success is not None:
        flagged = flagged.filter(finished_at__gt=last_success)
    flagged = flagged.exclude(pk__in=acknowledged_deployment_ids(target))
    return list(flagged.order_by("pk").values_list("pk", flat=True))
