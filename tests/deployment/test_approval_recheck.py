"""The approval is checked again where it takes effect: at the claim, before any upload,
and in the go-live transaction (issue 24).

Real parts: a throwaway OpenSSH host running the real engine, the registry's task and
services, the real suspension path (a degraded scheduled validation). A suspension
that lands before the claim stops the deployment with nothing sent; one that lands
while the files are going out ends the deployment not-succeeded, with the version
unmoved and the deployers told.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from models_registry.events import EventType
from models_registry.models import (
    Deployment,
    DeploymentStatus,
    Environment,
    ModelState,
    ModelVersion,
    ValidationRun,
)
from models_registry.services import deployments, monitoring
from models_registry.services.audit import verify_audit_chain
from models_registry.tasks.deploy import run_deployment
from tests.deployment.registry_support import audit_types, registry_files, ssh_target
from tests.deployment.test_registry_deployments import (  # noqa: F401 -- fixtures
    baseline,
    fresh,
    media_root,
    people,
    versions,
)

pytestmark = pytest.mark.django_db


def suspend(version: ModelVersion) -> None:
    """What scheduled re-validation does to a degraded version: its approval is suspended."""
    run = ValidationRun.objects.create(model_version=version, kind=ValidationRun.KIND_SCHEDULED)
    monitoring.model_version_flag_degraded(
        model_version=version, validation_run=run, reason="live Sharpe fell below the gate"
    )


def test_a_deploy_claimed_after_a_suspension_is_refused_before_upload(
    host_factory: Any,
    ssh_user_key: Any,
    versions: Any,  # noqa: F811
    people: dict[str, Any],  # noqa: F811
    baseline: Any,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    host = host_factory(baseline)
    production = ssh_target("production-ssh", Environment.PRODUCTION, [host], ssh_user_key)
    version = versions.make()
    requested = deployments.deployment_request(
        model_version=version, target=production, requested_by=people["deployer"], enqueue=False
    )
    suspend(version)  # lands while the deployment waits for its worker
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        result = run_deployment(requested.pk)

    done = fresh(requested)
    assert done.status == DeploymentStatus.FAILED
    assert "suspended" in result["skipped"] and "before any upload" in result["skipped"]
    assert done.steps == [], "no step ran: nothing left for the host"
    assert audit_types(done) == ["deploy_requested", "deployment_approval_withdrawn"]
    host.assert_serves(baseline)  # the host still serves what it served
    assert fresh(version).state == ModelState.APPROVED
    notices = [m for m in mail.outbox if f"#{done.pk}" in m.subject]
    assert notices and people["deployer"].email in notices[0].to
    assert verify_audit_chain().ok


def test_a_suspension_landing_while_a_deploy_runs_ends_it_not_succeeded(
    host_factory: Any,
    ssh_user_key: Any,
    versions: Any,  # noqa: F811
    people: dict[str, Any],  # noqa: F811
    baseline: Any,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    host = host_factory(baseline)
    production = ssh_target("production-ssh", Environment.PRODUCTION, [host], ssh_user_key)
    version = versions.make()
    requested = deployments.deployment_request(
        model_version=version, target=production, requested_by=people["deployer"], enqueue=False
    )
    claimed = deployments.deployment_claim(requested.pk, task_id="")
    assert claimed is not None

    def suspend_once_uploaded(step: dict[str, Any]) -> None:
        if step["name"] == "upload":
            suspend(version)

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        done = deployments.deployment_execute(claimed, on_step=suspend_once_uploaded)

    assert done.status == DeploymentStatus.NEEDS_ATTENTION, done.error
    assert "could not go live" in done.error and "suspended" in done.error
    assert fresh(version).state == ModelState.APPROVED, "the version did not move"
    assert deployments.live_version_on_target(production) is None
    assert not Deployment.objects.filter(
        target=production, status=DeploymentStatus.SUCCEEDED
    ).exists()
    finished = audit_types(done)
    assert finished[-1] == EventType.DEPLOY_FINISHED
    assert EventType.MODEL_VERSION_IN_PRODUCTION not in audit_types(fresh(version))
    host.assert_serves(registry_files(version))  # the files did go out: hence attention
    notices = [m for m in mail.outbox if "NEEDS ATTENTION" in m.subject]
    assert notices and people["deployer"].email in notices[0].to
    assert verify_audit_chain().ok
