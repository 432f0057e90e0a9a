"""E-mail to the people a decision concerns, sent after the transaction commits."""

from __future__ import annotations

import hashlib
import hmac
import logging
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
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
            f"{version} ({version.symbol}) is staged and waits for your decision.\n"
            f"Approval requested by {requester}.\nsha256: {version.onnx_sha256}\n\n"
            f"{verdict_in_words(version)}\n"
            f"Decide on its page: {admin_link(version)}\n"
            f"Your inbox: {admin_link(None)}\n" + _policy_text(version)
        ),
        recipients,
    )


def _policy_text(version: ModelVersion) -> str:
    """The policy the version was judged under, what it loosens and what the defaults say."""
    from models_registry.selectors_policy import policy_lines

    return "".join(f"{line}\n" for line in policy_lines(version))


def admin_link(version: ModelVersion | None) -> str:
    """An absolute link to a version's admin page, or to the admin home (the inbox)."""
    from django.urls import reverse

    base = str(getattr(settings, "TRADEBOT_ADMIN_URL", "") or "").rstrip("/")
    home = reverse("admin:index")
    path = (
        home
        if version is None
        else reverse("admin:models_registry_modelversion_change", args=[version.pk])
    )
    # TRADEBOT_ADMIN_URL names the admin's own address: join the paths below it.
    return base + "/" + path[len(home) :] if base else path


def verdict_in_words(version: ModelVersion) -> str:
    """What the decision pages say first, as lines of a mail (admin_cockpit.verdict_block)."""
    from models_registry.admin import cockpit as admin_cockpit

    evidence = admin_cockpit.decision_evidence(version, "production")
    verdict = evidence["verdict"]
    lines = [
        "Under the shipped default gates: "
        + ("its evidence PASSES." if verdict["passes_defaults"] else "its evidence does NOT pass.")
    ]
    lines += [f"- {v['text']}" for v in verdict["verdicts"]]
    for policy in verdict["policies"]:
        if policy["loosened"]:
            lines.append(
                f"- {policy['what']} was judged under a looser policy: "
                + "; ".join(policy["loosened"])
            )
    comparison = verdict["comparison"]
    if comparison.get("rows"):
        lines.append(f"Against {comparison['other']} in production, same window:")
        lines += [f"  {r['metric']}: {r['this']} vs {r['other']}" for r in comparison["rows"]]
    else:
        lines.append(comparison.get("note") or "")
    if evidence["warnings"]:
        lines.append("Warnings:")
        lines += [f"- {w}" for w in evidence["warnings"]]
    return "\n".join(line for line in lines if line)


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
            f"Its page: {admin_link(decision.model_version)}\n"
            + _policy_text(decision.model_version)
        ),
        [requester.email],
    )


# --- deployers -----------------------------------------------------------------------

# A deployment ending like this may have left a host needing a person who can deploy.
DEPLOYER_NOTICE_STATUSES = ("failed", "rolled_back", "needs_attention")


def holders_emails(codename: str) -> list[str]:
    """Active users holding ``models_registry.<codename>`` (by group or directly)."""
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    holders = users.filter(
        Q(groups__permissions__codename=codename) | Q(user_permissions__codename=codename)
    ).distinct()
    return sorted({u.email for u in holders})


def deployers_emails() -> list[str]:
    return holders_emails("deploy_modelversion")


def notify_deployers(deployment_id: int) -> int:
    """Tell the people who can deploy or roll back that a deployment did not succeed."""
    from models_registry.models import Deployment

    deployment = Deployment.objects.select_related("target", "model_version").get(pk=deployment_id)
    recipients = deployers_emails()
    if not recipients:
        logger.warning("%s ended %s but no deployer has an e-mail", deployment, deployment.status)
        return 0
    urgent = "NEEDS ATTENTION: " if deployment.status == "needs_attention" else ""
    return _send(
        f"[tradebot] {urgent}{deployment.kind} #{deployment.pk} of {deployment.model_version} "
        f"to {deployment.target.name}: {deployment.get_status_display()}",
        (
            f"{deployment.kind} #{deployment.pk}: {deployment.model_version} "
            f"(sha256 {deployment.sha256}) to {deployment.target.name} "
            f"({deployment.target.environment}) ended {deployment.status}.\n"
            f"{deployment.error}\n\n"
            "Check the hosts with `manage.py deployment_status` and the deployment's steps "
            f"in the admin; your inbox: {admin_link(None)}\n"
        ),
        recipients,
    )


# --- webhook ------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Tradebot-Signature"


def webhook_body(event_id: int) -> bytes:
    """The event as canonical JSON: what is signed is exactly what is sent."""
    from models_registry.models import AuditEvent
    from models_registry.services.audit import canonical_json

    event = AuditEvent.objects.get(pk=event_id)
    return canonical_json(
        {
            "id": event.pk,
            "event_time": event.event_time.isoformat(),
            "event_type": event.event_type,
            "actor": event.actor_repr,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "object": event.object_repr,
            "data": event.data,
            "row_hash": event.row_hash,
        }
    ).encode()


def webhook_signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_queue(event_id: int) -> None:
    """Queue the event for the webhook if one is configured (called on commit)."""
    if not getattr(settings, "TRADEBOT_WEBHOOK_URL", ""):
        return
    from models_registry import dispatch

    dispatch.task_send(dispatch.SEND_WEBHOOK, args=(event_id,))


def webhook_send(event_id: int) -> int:
    """POST one event, signed with HMAC-SHA256; raises on a non-2xx answer (so it retries)."""
    url = settings.TRADEBOT_WEBHOOK_URL
    secret = getattr(settings, "TRADEBOT_WEBHOOK_SECRET", "")
    if not secret:
        raise ImproperlyConfigured("TRADEBOT_WEBHOOK_URL is set but TRADEBOT_WEBHOOK_SECRET is not")
    body = webhook_body(event_id)
    request = urllib.request.Request(  # noqa: S310 -- the operator's configured URL
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: webhook_signature(body, secret),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status
