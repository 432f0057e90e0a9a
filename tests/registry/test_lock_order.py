"""One lock order (docs/jobs.md): object rows first, the audit chain's lock last.

Two races the issue names, each between two real processes on their own PostgreSQL
connections: a reject against a finishing validation (the finishing side is held inside
its recording transaction, after its first audit event, the very window in which the old
order deadlocked), and a suspension against a deploy claim (started at the same instant,
several rounds). Each must end with no deadlock, no lost event and a verifying chain,
and with an outcome the lock order explains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from models_registry.events import EventType
from models_registry.models import (
    AuditEvent,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    Environment,
    ModelState,
    ModelVersion,
    RunStatus,
)
from models_registry.services import deployments, runs
from models_registry.services.audit import verify_audit_chain
from tests.conftest import PROJECT_ROOT, database_url_for_subprocesses

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks and deadlock detection are PostgreSQL's (SQLite writers are serial)")


def start(action: str, **args: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": database_url_for_subprocesses()}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.registry.lock_order_child", action, json.dumps(args)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result_of(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"the child printed no result:\n{out}\n{err[-3000:]}"
    return json.loads(lines[-1])


def events_of(obj: Any, event_type: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            object_type=type(obj).__name__, object_id=str(obj.pk), event_type=event_type
        ).order_by("id")
    )


def test_a_reject_racing_a_finishing_validation(
    version_factory: Any, second_approver: Any, tmp_path: Path
) -> None:
    version = version_factory()
    run = runs.validation_run_request(model_version=version, requested_by=None)
    assert runs.run_mark_running(run, task_id=run.task_id)
    marker = tmp_path / "paused"

    finishing = start("complete_validation", run=run.pk, marker=str(marker), pause=2.0)
    rejecting = start("reject", version=version.pk, approver=second_approver.pk, marker=str(marker))
    finished, rejected = result_of(finishing), result_of(rejecting)

    assert finished["ok"], finished
    assert rejected["ok"], rejected
    assert finished["status"] == RunStatus.PASSED
    # The validation held the version first, so it moved it; the reject waited, then
    # rejected the validated version.
    assert ModelVersion.objects.get(pk=version.pk).state == ModelState.REJECTED
    assert len(events_of(run, EventType.VALIDATION_RUN_RECORDED)) == 1
    validated = events_of(version, EventType.MODEL_VERSION_VALIDATED)
    rejections = events_of(version, EventType.MODEL_VERSION_REJECTED)
    assert len(validated) == len(rejections) == 1
    assert validated[0].pk < rejections[0].pk
    assert rejections[0].data["old_state"] == ModelState.VALIDATED
    assert verify_audit_chain().ok


ROUNDS = 4


def test_a_suspension_racing_a_deploy_claim(version_factory: Any, deployer: Any) -> None:
    for n in range(ROUNDS):
        target = DeploymentTarget.objects.create(
            name=f"race-{n}", environment=Environment.PRODUCTION, is_local=True
        )
        version = version_factory(ModelState.APPROVED)
        deployment = deployments.deployment_request(
            model_version=version, target=target, requested_by=deployer, enqueue=False
        )
        at = time.time() + 1.5
        claiming = start(
            "claim_deployment", deployment=deployment.pk, task_id=deployment.task_id, at=at
        )
        suspending = start("suspend", version=version.pk, at=at + 0.002 * n)
        claimed, suspended = result_of(claiming), result_of(suspending)
        assert claimed["ok"], claimed
        assert suspended["ok"], suspended

        row = Deployment.objects.get(pk=deployment.pk)
        degraded = events_of(version, EventType.MODEL_VERSION_DEGRADED)
        assert len(degraded) == 1, "the suspension is on record exactly once"
        if claimed["claimed"]:
            # The claim held the version first: it started under an approval in force.
            started = events_of(row, EventType.DEPLOYMENT_STARTED)
            assert row.status == DeploymentStatus.RUNNING and len(started) == 1
            assert started[0].pk < degraded[0].pk
        else:
            # The suspension came first: the claim saw it and stopped before any upload.
            withdrawn = events_of(row, EventType.DEPLOYMENT_APPROVAL_WITHDRAWN)
            assert row.status == DeploymentStatus.FAILED and len(withdrawn) == 1
            assert degraded[0].pk < withdrawn[0].pk
            assert not events_of(row, EventType.DEPLOYMENT_STARTED)
        assert "deadlock" not in json.dumps([claimed, suspended]).lower()
    assert verify_audit_chain().ok
