# ruff: noqa: F811 - the fixtures are imported from test_registry_deployments
"""Kill -9 of a real Celery worker at each step boundary of a production deploy converges.

A real OpenSSH host on loopback runs the real engine on v1 (the registry's version in
production there); a real `celery worker` takes the deployment of v2 and, started
with ``TRADEBOT_TEST_KILL_AT=<point>`` (``deployment/crash_points.py``), SIGKILLs
itself exactly at that boundary, once the step is on record. The boundaries are every
one of a deploy that succeeds, then every one of the automatic rollback of a deploy
whose new model the engine refuses at start-up. Reconcile (the beat's service, past
the lease) then ends the deployment from the host's real state, and:

- the host serves exactly one complete model, and the registry equals the host;
- no deployment is left non-terminal; the version moved only with a success;
- a redelivery of the killed task's own message changes nothing;
- the keyed, anchored audit chain verifies (with the host's anchor copy too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core import mail

from deployment import crash_points
from models_registry.models import (
    ACTIVE_DEPLOYMENT_STATUSES,
    AuditEvent,
    Deployment,
    DeploymentStatus,
    Environment,
    ModelState,
    ModelVersion,
)
from models_registry.services import deployments, lifecycle
from models_registry.services.audit import verify_audit_chain
from models_registry.tasks.deploy import run_deployment
from tests.deployment.registry_support import describe, registry_files, ssh_target
from tests.deployment.test_registry_deployments import (  # noqa: F401 - pytest fixtures
    fresh,
    media_root,
    people,
    versions,
)
from tests.registry.conftest import finished_deployment, requires_postgresql

pytestmark = [
    requires_postgresql,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("keyed_and_anchored"),
]

OLD, NEW = "old", "new"

# point -> (status right after the kill, status after reconcile, what the host serves then)
# for a deploy of a good v2. Nothing the engine reads changes before the swap.
BOUNDARIES = {
    # nothing reached the host: the new version never went live
    "deploy_claimed": (DeploymentStatus.RUNNING, DeploymentStatus.FAILED, OLD),
    "step:verify_local": (DeploymentStatus.RUNNING, DeploymentStatus.FAILED, OLD),
    "step:connect": (DeploymentStatus.RUNNING, DeploymentStatus.FAILED, OLD),
    # the upload folder exists, nothing in it yet
    "step:preflight": (DeploymentStatus.RUNNING, DeploymentStatus.FAILED, OLD),
    # v2 in the upload folder (unchecked, then checked): removed
    "step:upload": (DeploymentStatus.RUNNING, DeploymentStatus.FAILED, OLD),
    "step:verify": (DeploymentStatus.RUNNING, DeploymentStatus.FAILED, OLD),
    # v2 beside v1 in the model folder under temporary names: removed
    "step:stage": (DeploymentStatus.RUNNING, DeploymentStatus.FAILED, OLD),
    # v1 also kept as .backup and in the versions folder: the rollback copy stays
    "step:backup": (DeploymentStatus.RUNNING, DeploymentStatus.FAILED, OLD),
    # new files in place, the engine still on the old ones: restored and restarted
    "step:swap": (DeploymentStatus.RUNNING, DeploymentStatus.ROLLED_BACK, OLD),
    # restarted on the new files, never checked: once it serves them, that is a success
    "step:restart": (DeploymentStatus.RUNNING, DeploymentStatus.SUCCEEDED, NEW),
    # checked healthy, the upload folder still there: a success, the leftovers removed
    "step:health_check": (DeploymentStatus.RUNNING, DeploymentStatus.SUCCEEDED, NEW),
    # every step done on the host, nothing finished in the registry
    "step:cleanup": (DeploymentStatus.RUNNING, DeploymentStatus.SUCCEEDED, NEW),
    # the finishing transaction dies with the worker: no outcome, the version unmoved
    "deploy_finish_recorded": (DeploymentStatus.RUNNING, DeploymentStatus.SUCCEEDED, NEW),
    # committed before the ack: nothing left to reconcile
    "deploy_committed": (DeploymentStatus.SUCCEEDED, DeploymentStatus.SUCCEEDED, NEW),
}

# The same for a deploy of a v2 the engine refuses at start-up (its golden outputs do not
# match): the health check fails and the worker is killed inside the automatic rollback.
# Whatever the host holds then, reconcile ends with v1 live and says the change was
# undone (rolled_back), never "failed, never went live" and never a dead host.
ROLLBACK_BOUNDARIES = {
    # the failed check on record, nothing restored: v2's files, no engine
    "step:rollback_connect": (DeploymentStatus.RUNNING, DeploymentStatus.ROLLED_BACK, OLD),
    # v1 staged under temporary names beside v2's files
    "step:rollback_stage": (DeploymentStatus.RUNNING, DeploymentStatus.ROLLED_BACK, OLD),
    # v1's files back, no engine running on them
    "step:rollback_swap": (DeploymentStatus.RUNNING, DeploymentStatus.ROLLED_BACK, OLD),
    # restarted on v1, not yet checked
    "step:rollback_restart": (DeploymentStatus.RUNNING, DeploymentStatus.ROLLED_BACK, OLD),
    # v1 checked healthy again; the rollback's cleanup and its record left to do
    "step:rollback_health_check": (DeploymentStatus.RUNNING, DeploymentStatus.ROLLED_BACK, OLD),
    "step:cleanup": (DeploymentStatus.RUNNING, DeploymentStatus.ROLLED_BACK, OLD),
    "deploy_finish_recorded": (DeploymentStatus.RUNNING, DeploymentStatus.ROLLED_BACK, OLD),
    "deploy_committed": (DeploymentStatus.ROLLED_BACK, DeploymentStatus.ROLLED_BACK, OLD),
}

# Boundaries after the killed worker's own restart of the version the host ends on: that
# engine keeps starting on its own, and reconcile judges what the host settles on.
RESTARTED_BEFORE_THE_KILL = {"step:rollback_restart", "step:rollback_health_check"}


def in_production_on(host: Any, version: ModelVersion, target: Any, deployer: Any) -> None:
    """v1 installed and running on the host, and recorded as the target's live version."""
    record = finished_deployment(version, target, deployer)
    lifecycle.model_version_mark_in_production(
        model_version=version, deployment=record, actor=deployer
    )


def host_anchor(host: Any) -> list[tuple[str, str]]:
    path = host.root / "audit-anchor.json"
    return [("host1", path.read_text())] if path.exists() else []


@dataclass
class Killed:
    """A deployment of v2 whose worker killed itself at `point`, and what it ran on."""

    point: str
    deployment: Deployment
    host: Any
    target: Any
    v1: ModelVersion
    v2: ModelVersion


@pytest.fixture
def kill_deploy(
    host_factory: Any,
    ssh_user_key: Path,
    versions: Any,
    people: dict[str, Any],
    media_root: Path,
    celery_worker_factory: Any,
    keyed_and_anchored: dict[str, str],
) -> Any:
    """Run a deploy of a fresh v2 (`break_golden`: one the engine refuses) onto a host
    serving v1 in a real worker armed to SIGKILL itself at `point`; wait for the kill."""

    def run(point: str, *, break_golden: bool = False) -> Killed:
        # Booted first: its imports take seconds, the host and the versions are made meanwhile.
        worker = celery_worker_factory(
            queues="deploy",
            env={"MEDIA_ROOT": str(media_root), crash_points.ENV_VAR: point, **keyed_and_anchored},
            ready=False,
        )
        deployer = people["deployer"]
        v1 = versions.make()
        host = host_factory(registry_files(v1))
        production = ssh_target("production-kill", Environment.PRODUCTION, [host], ssh_user_key)
        in_production_on(host, v1, production, deployer)
        v2 = versions.make(break_golden=break_golden)
        worker.wait_ready()
        requested = deployments.deployment_request(
            model_version=v2, target=production, requested_by=deployer
        )
        worker.wait(timeout=180)
        log = Path(worker.log_path).read_text()
        assert worker.returncode == -9, (
            f"worker not killed (rc {worker.returncode}):\n{log[-3000:]}"
        )
        assert f"at crash point {point}" in log
        return Killed(point, requested, host, production, v1, v2)

    return run


def check_left_at_the_boundary(killed: Killed, left_status: str) -> Deployment:
    left = fresh(killed.deployment)
    assert left.status == left_status, describe(left)
    if killed.point.startswith("step:"):
        # the boundary is after the step was recorded: it is the last one on the row
        assert left.steps[-1]["name"] == killed.point.removeprefix("step:"), describe(left)
        assert left.steps[-1]["ok"], describe(left)
    assert deployments.reconcile_stale_deployments() == [], "inside its lease: left alone"
    return left


def reconcile_now(killed: Killed, left_status: str, final_status: str) -> Deployment:
    """Reconcile past the lease; a redelivery of the killed task's message changes nothing."""
    finished = deployments.reconcile_stale_deployments(older_than=timedelta(0))
    done = fresh(killed.deployment)
    if left_status == DeploymentStatus.RUNNING:
        assert [d.pk for d in finished] == [done.pk]
        assert "reconciled after the worker was lost" in done.error, describe(done)
    else:
        assert finished == []
    assert done.status == final_status, describe(done)
    late = run_deployment.apply(args=[done.pk], task_id=done.task_id).get()
    assert "not queued" in late["skipped"], late
    assert fresh(done).status == final_status
    return done


def assert_converged(killed: Killed, done: Deployment, serves: str) -> None:
    """One complete model served, the registry equal to the host, nothing left running,
    the version moved only with a success, one finishing event, the audit chain intact."""
    host, v1, v2 = killed.host, killed.v1, killed.v2
    live, other = (v2, v1) if serves == NEW else (v1, v2)
    host.assert_serves(registry_files(live))  # one complete model, the engine on it
    assert not (host.upload_dir / f"d{done.pk}").exists(), "upload folder left behind"
    if serves == NEW:  # kept for a later rollback, as a finished deploy keeps it
        assert (host.root / "model-versions" / v2.onnx_sha256).is_dir(), describe(done)
    status = deployments.target_status(killed.target)
    assert status["consistent"] is True, status
    assert status["registry_sha256"] == live.onnx_sha256
    assert status["needs_attention"] == [], status
    assert fresh(live).state == ModelState.IN_PRODUCTION
    assert fresh(other).state == (ModelState.RETIRED if serves == NEW else ModelState.APPROVED)
    assert not Deployment.objects.filter(status__in=ACTIVE_DEPLOYMENT_STATUSES).exists()
    assert ModelVersion.objects.filter(name=v2.name).count() == 2, "no duplicate version"
    assert_one_finish_and_a_sound_chain(done, host)


def assert_one_finish_and_a_sound_chain(done: Deployment, host: Any) -> None:
    finishes = AuditEvent.objects.filter(
        event_type="deploy_finished", object_type="Deployment", object_id=str(done.pk)
    )
    assert finishes.count() == 1, "exactly one finishing event"
    assert finishes.get().data["status"] == done.status
    report = verify_audit_chain(extra_anchors=host_anchor(host))
    assert report.ok and report.keyed and report.anchors_checked > 0, report


@pytest.mark.parametrize("point", list(BOUNDARIES))
def test_a_deploy_killed_at_each_boundary_converges_through_reconcile(
    point: str, kill_deploy: Any
) -> None:
    left_status, final_status, serves = BOUNDARIES[point]
    killed = kill_deploy(point)
    check_left_at_the_boundary(killed, left_status)
    if serves == NEW and left_status == DeploymentStatus.RUNNING:
        # The engine the killed worker restarted keeps starting on its own; reconcile
        # judges what the host settles on (a condition, not a time).
        killed.host.wait_until_serving(killed.v2.onnx_sha256)

    done = reconcile_now(killed, left_status, final_status)

    assert_converged(killed, done, serves)


@pytest.mark.parametrize("point", list(ROLLBACK_BOUNDARIES))
def test_a_rollback_killed_at_each_boundary_converges_to_the_previous_model(
    point: str, kill_deploy: Any
) -> None:
    left_status, final_status, serves = ROLLBACK_BOUNDARIES[point]
    killed = kill_deploy(point, break_golden=True)
    left = check_left_at_the_boundary(killed, left_status)
    failed = [step["name"] for step in left.steps if not step["ok"]]
    assert failed == ["health_check"], describe(left)  # the rollback, not a failed upload
    if point in RESTARTED_BEFORE_THE_KILL:
        killed.host.wait_until_serving(killed.v1.onnx_sha256)

    done = reconcile_now(killed, left_status, final_status)

    assert_converged(killed, done, serves)


def test_a_rollback_killed_that_reconcile_cannot_finish_needs_attention(
    kill_deploy: Any,
) -> None:
    """Killed with v1's files back but no engine, on a host that now refuses every restart:
    reconcile cannot make it healthy, and says so loudly rather than "rolled back"."""
    killed = kill_deploy("step:rollback_swap", break_golden=True)
    check_left_at_the_boundary(killed, DeploymentStatus.RUNNING)
    (killed.host.root / "fail-restart").touch()  # every restart refused from now on
    mail.outbox.clear()

    done = reconcile_now(killed, DeploymentStatus.RUNNING, DeploymentStatus.NEEDS_ATTENTION)

    assert done.error.startswith("NEEDS ATTENTION"), describe(done)
    restarts = [s for s in done.steps if s["name"] == "rollback_restart"]
    assert restarts and not any(s["ok"] for s in restarts[-3:]), describe(done)
    assert not killed.host.engine_alive(), "no engine runs there: nothing may call it fine"
    status = deployments.target_status(killed.target)
    assert status["consistent"] is False, status
    assert status["needs_attention"] == [done.pk], status
    assert fresh(killed.v1).state == ModelState.IN_PRODUCTION  # what the registry shipped
    assert fresh(killed.v2).state == ModelState.APPROVED
    assert not Deployment.objects.filter(status__in=ACTIVE_DEPLOYMENT_STATUSES).exists()
    deployer_mail = [m for m in mail.outbox if "dora_deployer@example.test" in m.to]
    assert [m.subject.startswith("[tradebot] NEEDS ATTENTION") for m in deployer_mail] == [True]
    assert_one_finish_and_a_sound_chain(done, killed.host)
