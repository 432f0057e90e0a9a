"""Health changes of a version in production: flagged degraded (its approval suspended,
the approvers and deployers mailed), or passing again (recovered, or healthy)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from models_registry.events import EventType
from models_registry.models import ApprovalSuspension, HealthStatus, ModelVersion, ValidationRun
from models_registry.services import lifecycle
from models_registry.services.notifications import approvers_emails, deployers_emails
from models_registry.transitions import VERSION_HEALTH, transition

logger = logging.getLogger(__name__)


def model_version_flag_degraded(
    *, model_version: ModelVersion, validation_run: ValidationRun, reason: str
) -> ModelVersion:
    """Flag a version degraded and suspend its approval in force; one audit event, mail after.

    The lifecycle state is left alone (the version keeps running where it runs: rolling back
    is a human decision). Nothing is recorded again when the version is already degraded
    and no approval is in force, so a model failing day after day does not flood approvers.
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        approval = lifecycle.current_approval(version)
        old_health = version.health
        if old_health == HealthStatus.DEGRADED and approval is None:
            logger.info("%s is still degraded (run #%s)", version, validation_run.pk)
            return version
        suspension = None
        if approval is not None:
            suspension = ApprovalSuspension.objects.create(
                approval=approval, reason=reason, validation_run=validation_run
            )
        version = transition(
            machine=VERSION_HEALTH,
            row=version,
            to=HealthStatus.DEGRADED,
            event=EventType.MODEL_VERSION_DEGRADED,
            fields={"health_changed_at": timezone.now()},
            data={
                "state": version.state,
                "validation_run": validation_run.pk,
                "scheduled_slot": validation_run.scheduled_slot,
                "reason": reason,
                "suspended_approval": approval.pk if approval else None,
                "suspension": suspension.pk if suspension else None,
            },
        )
        transaction.on_commit(
            lambda: notify_approvers_degraded(version.pk, validation_run.pk, reason), robust=True
        )
    model_version.refresh_from_db()
    return version


def model_version_mark_passing(
    *, model_version: ModelVersion, validation_run: ValidationRun
) -> ModelVersion:
    """A passing scheduled run: degraded becomes recovered (audited); the approval stays off."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        old_health = version.health
        if old_health in (HealthStatus.HEALTHY, HealthStatus.RECOVERED):
            return version
        recovered = old_health == HealthStatus.DEGRADED
        version = transition(
            machine=VERSION_HEALTH,
            row=version,
            to=HealthStatus.RECOVERED if recovered else HealthStatus.HEALTHY,
            event=(
                EventType.MODEL_VERSION_RECOVERED if recovered else EventType.MODEL_VERSION_HEALTHY
            ),
            fields={"health_changed_at": timezone.now()},
            data={
                "validation_run": validation_run.pk,
                "scheduled_slot": validation_run.scheduled_slot,
                **({"approval_restored": False} if recovered else {}),
            },
        )
    model_version.refresh_from_db()
    return version


def notify_approvers_degraded(version_id: int, run_id: int, reason: str) -> int:
    """E-mail the approvers; a mail fault is logged and never undoes the recorded flag."""
    version = ModelVersion.objects.get(pk=version_id)
    # Approvers decide on the approval; deployers are the ones who can roll back.
    recipients = sorted({*approvers_emails(), *deployers_emails()})
    if not recipients:
        logger.warning("%s degraded but no approver or deployer has an e-mail", version)
        return 0
    message = (
        f"Scheduled validation run #{run_id} of {version} ({version.symbol}) failed:\n"
        f"{reason}\n\n"
        f"{version} is flagged degraded and its approval is suspended: it cannot be deployed "
        "to any target until it is approved again. It is still running where it was "
        "deployed; whether to roll back is your decision (admin: Deployments, Roll back).\n"
    )
    try:
        return send_mail(
            subject=f"[tradebot] {version} degraded: approval suspended",
            message=message,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
            fail_silently=False,
        )
    except Exception:
        logger.exception("could not e-mail approvers about degraded %s", version)
        return 0
