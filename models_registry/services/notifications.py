"""E-mail to the people a decision concerns, sent after the transaction commits."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q

from models_registry.models import Approval, ModelVersion

logger = logging.getLogger(__name__)


def approvers_emails(*, excluding: tuple[int | None, ...] = ()) -> list[str]:
    """Active approvers with an address, leaving out people four-eyes bars from deciding."""
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    holders = (
        users.filter(
            Q(groups__permissions__codename="approve_modelversion")
            | Q(user_permissions__codename="approve_modelversion")
        )
        .exclude(pk__in=[pk for pk in excluding if pk is not None])
        .distinct()
    )
    return sorted({u.email for u in holders})


def _send(subject: str, message: str, recipients: list[str]) -> int:
    """Send after commit; a mail server fault is logged, never undoes a recorded decision."""
    try:
        return send_mail(
            subject=subject,
            message=message,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
            fail_silently=False,
        )
    except Exception:
        logger.exception("could not send %r to %s", subject, ", ".join(recipients))
        return 0


def notify_approvers_awaiting(model_version_id: int) -> int:
    version = ModelVersion.objects.select_related("approval_requested_by").get(pk=model_version_id)
    recipients = approvers_emails(
        excluding=(version.created_by_id, version.approval_requested_by_id)
    )
    if not recipients:
        logger.warning("%s awaits approval but no approver has an e-mail address", version)
        return 0
    requester = (
        version.approval_requested_by.get_username() if version.approval_requested_by else "?"
    )
    return _send(
        f"[tradebot] {version} awaits your approval",
        (
            f"{version} ({version.symbol}) passed validation, paper trading and staging.\n"
            f"Approval requested by {requester}.\nsha256: {version.onnx_sha256}\n"
        ),
        recipients,
    )


def notify_requester_decided(approval_id: int) -> int:
    decision = Approval.objects.select_related("model_version", "requested_by", "decided_by").get(
        pk=approval_id
    )
    requester = decision.requested_by or decision.model_version.created_by
    if requester is None or not requester.email:
        return 0
    return _send(
        f"[tradebot] {decision.model_version} was {decision.decision}",
        (
            f"{decision.decided_by.get_username()} {decision.decision} {decision.model_version}.\n"
            f"Comment: {decision.comment}\n"
        ),
        [requester.email],
    )
