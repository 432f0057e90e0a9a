"""Deployment tasks on the `deploy` queue.

`run_deployment` is not retried: after the swap a blind retry could leave a host
between two models. A redelivered message finds the deployment no longer
queued and does nothing; a deployment whose worker died is finished by
`reconcile_deployments`, which reads the hosts' real state.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from deployment import crash_points
from models_registry.services import deployments
from tradebot.queues import DEFAULT, DEPLOY, queue_options


@shared_task(
    bind=True, name="models_registry.run_deployment", max_retries=0, **queue_options(DEPLOY)
)
def run_deployment(self: Any, deployment_id: int) -> dict[str, Any]:
    claim = deployments.deployment_claim_for_task(deployment_id, task_id=self.request.id or "")
    if claim.redelivered:
        resumed = deployments.deployment_resume(deployment_id)
        return {"deployment": resumed.pk, "status": resumed.status, "resumed": True}
    if claim.job is None:
        return {"deployment": deployment_id, "skipped": claim.reason}
    crash_points.reached("deploy_claimed")  # test-only: kill -9 here when armed
    finished = deployments.deployment_execute(claim.job)
    crash_points.reached("deploy_committed")
    return {"deployment": finished.pk, "status": finished.status, "error": finished.error}


@shared_task(name="models_registry.reconcile_deployments", **queue_options(DEPLOY))
def reconcile_deployments(older_than_seconds: int | None = None) -> list[dict[str, Any]]:
    from datetime import timedelta

    older_than = timedelta(seconds=older_than_seconds) if older_than_seconds is not None else None
    finished = deployments.reconcile_stale_deployments(older_than=older_than)
    return [{"deployment": d.pk, "status": d.status, "error": d.error} for d in finished]


@shared_task(name="models_registry.start_scheduled_deployments", **queue_options(DEFAULT))
def start_scheduled_deployments() -> list[int]:
    return deployments.start_due_deployments()


@shared_task(name="models_registry.reconcile_jobs", **queue_options(DEFAULT))
def reconcile_jobs() -> dict[str, Any]:
    """Beat: end runs stuck past their lease, and the deployments likewise."""
    from models_registry.services import jobs

    runs = jobs.runs_reconcile()
    ended = deployments.reconcile_stale_deployments()
    return {
        "runs": [{"run": f"{type(r).__name__}#{r.pk}", "status": r.status} for r in runs],
        "deployments": [{"deployment": d.pk, "status": d.status} for d in ended],
    }
