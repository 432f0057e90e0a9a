"""Host checks on record: what each host of a target really served when someone looked.

The fleet home shows the last observed host state without opening SSH on page load, so
every look at the hosts (``deployment_status``, the admin's "Check hosts" button) is
kept as one ``host_check`` audit event on the target. Nothing here changes a state.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User

from models_registry.models import AuditEvent, DeploymentTarget
from models_registry.services import deployments
from models_registry.services.audit import audit_event_record

HOST_CHECK_EVENT = "host_check"


def host_check_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The part of ``target_status`` worth keeping: per host, what it serves and any error."""
    hosts = {
        label: {
            "live_sha256": host.get("live_sha256"),
            "files_sha256": host.get("files_sha256"),
            "matches_registry": bool(host.get("matches_registry")),
            "serving_version": host.get("serving_version"),
            "serving_backup": bool(host.get("serving_backup")),
            "halted": bool(host.get("halted")),
            "engine_costs": host.get("engine_costs"),
            "costs_problem": host.get("costs_problem"),
            "costs_stale": host.get("costs_stale"),
            "error": host.get("error"),
        }
        for label, host in report["hosts"].items()
    }
    return {
        "registry_version": report["registry_version"],
        "registry_sha256": report["registry_sha256"],
        "consistent": bool(report["consistent"]),
        "needs_attention": list(report["needs_attention"]),
        "active_deployment": report["active_deployment"],
        "hosts": hosts,
    }


def target_host_check(
    *, target: DeploymentTarget, actor: User | None, source: str
) -> tuple[dict[str, Any], AuditEvent]:
    """Read every host (outside any transaction: SSH is slow) and record what was seen."""
    report = deployments.target_status(target)
    event = audit_event_record(
        event_type=HOST_CHECK_EVENT,
        actor=actor,
        obj=target,
        data={**host_check_summary(report), "source": source},
    )
    return report, event
