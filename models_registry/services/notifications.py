"""E-mail to the people a decision concerns, sent after the transaction commits."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q

from models_registry.models import Approval, ModelVersion

logger = logging.getLogger(__name__)


def approvers_emails() -> list[str]:
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    holders = users.filter(
        Q(groups__permissions__codename="approve_modelversion")
        | Q(user_permissions__codename="approve_modelversion")
    ).distinct()
    return sorted({u.email for u in holders})


def notify_approvers_awaiting(model_version_id: int) -> int:
    version = ModelVersion.objects.get(pk=model_version_id)
    recipients = approvers_emails()
    if not recipients:
        logger.warning("%s awaits approval but no approver has an e-mail address", version)
        return 0
    requester = (
        version.approval_requested_by.get_username() if version.approval_requested_by else "?"
    )
    return send_mail(
        subject=f"[tradebot] {version} awaits your approval",
        message=(
            f"{version} ({version.symbol}) passed validation, paper trading and staging.\n"
            f"Approval requested by {requester}.\nsha256: {version.onnx_sha256}\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
        fail_silently=False,
    )


def notify_requester_decided(approval_id: int) -> int:
    decision = Approval.objects.select_related("model_version", "requested_by", "decided_by").get(
        pk=approval_id
    )
    requester = decision.requested_by or decision.model_version.created_by
    if requester is None or not requester.email:
        return 0
    return send_mail(
        subject=f"[tradebot] {decision.model_version} was {decision.decision}",
        message=(
            f"{decision.decided_by.get_username()} {decision.decision} {decision.model_version}.\n"
            f"Comment: {decision.comment}\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[requester.email],
        fail_silently=False,
    )
