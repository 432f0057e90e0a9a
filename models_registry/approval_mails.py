"""The approval mails: what the decision pages say first, in words, with links.

These mails are built from the decision evidence (``admin_cockpit.decision_evidence``), which
reads runs, policies and production through the services. So they are not a service
themselves: the lifecycle announces a request or a decision with a signal
(``models_registry.signals``), sent after commit, and this module, connected in
``apps.ready``, writes the mail. The services stay free of any page or mail layout, and no
import circle runs through them.
"""

from __future__ import annotations

import logging
from typing import Any

from models_registry.admin import cockpit as admin_cockpit
from models_registry.models import Approval, ModelVersion
from models_registry.services.notifications import _send, admin_link, approvers_emails

logger = logging.getLogger(__name__)


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
            f"Your inbox: {admin_link(None)}\n"
        ),
        recipients,
    )


def _policy_text(version: ModelVersion) -> str:
    """The policy paragraph of a mail: the one the verdict block shows (``policy_paragraph``)."""
    evidence = admin_cockpit.decision_evidence(version, "production")
    return "".join(f"{line}\n" for line in policy_paragraph(evidence["verdict"]))


def policy_paragraph(verdict: dict[str, Any]) -> list[str]:
    """The policy the evidence was judged under, as mail lines: said once per mail."""
    policy = verdict["policy"]
    lines = []
    for judged in policy["judged"]:
        note = f": {judged['note']}" if judged["note"] else ""
        lines.append(f"Policy: {judged['name']} ({judged['what']}){note}")
        lines += [f"LOOSER than the shipped defaults: {item}" for item in judged["loosened"]]
    if policy["changed_since"]:
        lines.append(f"Policy in force now: {policy['in_force_now_name']}")
    if policy["lineage_note"]:
        lines.append(policy["lineage_note"])
    return lines


def verdict_in_words(version: ModelVersion) -> str:
    """What the decision pages say first, as lines of a mail (admin_cockpit.verdict_block)."""
    evidence = admin_cockpit.decision_evidence(version, "production")
    verdict = evidence["verdict"]
    lines = [
        "Under the shipped default gates: "
        + ("its evidence PASSES." if verdict["passes_defaults"] else "its evidence does NOT pass.")
    ]
    lines += [f"- {v['text']}" for v in verdict["verdicts"]]
    lines += policy_paragraph(verdict)
    forward = evidence.get("forward")
    lines.append(forward["sentence"] if forward else "No forward paper run on staging yet.")
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


def on_approval_requested(*, model_version_id: int, **_: Any) -> int:
    return notify_approvers_awaiting(model_version_id)


def on_approval_decided(*, approval_id: int, **_: Any) -> int:
    return notify_requester_decided(approval_id)
