"""The registry's side of deployment, end to end: registry rows built from the real tiny
engine models, targets whose hosts are throwaway OpenSSH servers running the real engine,
and the commands, admin action, task and services that drive them.

Each case checks what the host really ends with (one complete model, the engine
serving the sha256 the registry says), the Deployment row, the version's state
and the audit trail.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployment import local_service
from deployment.targets import HostSpec
from engine.data.csv_import import read_kline_csv, read_sentiment_csv
from engine.data.store import merge_candles, merge_sentiment
from models_registry import roles
from models_registry.models import (
    ApprovalSuspension,
    Deployment,
    DeploymentStatus,
    Environment,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
)
from models_registry.services import attention, deployments, lifecycle
from models_registry.services.attention_checks import inconsistency
from models_registry.services.local_targets import local_target_ensure
from models_registry.tasks.deploy import run_deployment
from tests.conftest import PROJECT_ROOT, database_url_for_subprocesses
from tests.deployment.hosts import FakeHost
from tests.deployment.registry_support import (
    PAPER_BARS,
    audit_data,
    audit_types,
    describe,
    register_version,
    registry_files,
    ssh_target,
    staging_records_target,
    step_names,
    walk_to,
)
from tests.deployment.support import MODEL_NAME
from tests.registry.conftest import make_user
from tests.support.policy import policy_set
from tests.support.walk import walk

# host_identity (issue 26): the registry checks and locks the hosts before any upload.
DEPLOY_STEPS = ["connect", "preflight", "host_identity", "upload", "verify", "stage", "backup",
                "swap", "restart", "health_check", "cleanup"]  # fmt: skip


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return root


@pytest.fixture
def people(db: None) -> dict[str, Any]:
    return {
        "engineer": make_user("erin_engineer", roles.ML_ENGINEER),
        "approver": make_user("alice_approver", roles.APPROVER),
        "deployer": make_user("dora_deployer", roles.DEPLOYER),
    }


class Versions:
    """Registry versions of the tiny engine model, each with its own sha256."""

    def __init__(self, models: Any, folder: Path, people: dict[str, Any]) -> None:
        self.models, self.folder, self.people = models, folder, people
        self.count = 0
        self._staging_records = None

    def make(self, state: str = ModelState.APPROVED, *, break_golden: bool = False) -> ModelVersion:
        self.count += 1
        version = register_version(
            self.models.make(self.count),
            self.folder / f"v{self.count}",
            self.people["engineer"],
            break_golden=break_golden,
        )
        if state == ModelState.TRAINED:
            return version
        if self._staging_records is None and state == ModelState.APPROVED:
            self._staging_records = staging_records_target()
        return walk_to(
            version,
            state,
            engineer=self.people["engineer"],
            approver=self.people["approver"],
            staging_records=self._staging_records,
        )


@pytest.fixture
def versions(models: Any, tmp_path: Path, people: dict[str, Any]) -> Versions:
    return Versions(models, tmp_path / "sources", people)


@pytest.fixture
def baseline(models: Any) -> Any:
    """The model installed by hand before the registry ever deployed (the guide's first install)."""
    return models.make(0)


def fresh(obj: Any) -> Any:
    return type(obj).objects.get(pk=obj.pk)


def command(name: str, *args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command(name, *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def deploy_now(version: ModelVersion, target: Any, user: Any) -> Deployment:
    """Request a deployment and run the queued task right here, as the worker would."""
    requested = deployments.deployment_request(
        model_version=version, target=target, requested_by=user
    )
    result = run_deployment(requested.pk)
    assert result["deployment"] == requested.pk
    return fresh(requested)


# --------------------------------------------------------------------------- the lifecycle


@pytest.mark.django_db
def test_staging_then_production_then_newer_then_rollback(
    host_factory,
    ssh_user_key,
    check_only_command,
    versions,
    people,
    baseline,
    django_capture_on_commit_callbacks,
):
    engineer, approver, deployer = people["engineer"], people["approver"], people["deployer"]
    staging_host, production_host = host_factory(baseline), host_factory(baseline)
    staging = ssh_target(
        "staging-ssh", Environment.STAGING, [staging_host], ssh_user_key,
        check_command=check_only_command,
    )  # fmt: skip
    production = ssh_target(
        "production-ssh", Environment.PRODUCTION, [production_host], ssh_user_key
    )
    first = versions.make(ModelState.VALIDATED)

    # staging through the command, run here: no task is sent for a worker to race it
    with django_capture_on_commit_callbacks() as sent:
        staged = command("deploy_model", first.name, "--version", str(first.version), "--target",
                         staging.name, "--user", engineer.username, "--inline")  # fmt: skip
    assert not [c for c in sent if c.__qualname__.startswith("_create_deployment")], sent

    staging_deployment = Deployment.objects.get(pk=staged["deployment"])
    assert staged["status"] == "succeeded", describe(staging_deployment)
    assert staging_deployment.task_id == "inline"
    staging_host.assert_serves(registry_files(first))
    assert "compatibility_check" in step_names(staging_deployment)
    assert staging_deployment.compatibility["passed"] is True
    assert [r["exit_code"] for r in staging_deployment.compatibility["hosts"].values()] == [0]
    first = fresh(first)
    assert first.state == ModelState.STAGED
    trail = audit_types(staging_deployment)
    assert trail[0] == "deploy_requested" and trail[-1] == "deploy_finished"
    assert trail.count("deployment_step") == len(staging_deployment.steps)
    assert audit_data(first, "model_version_staged")["staging_deployment"] == staging_deployment.pk

    # staged: its engine there now paper trades forward (tests/deployment/
    # test_forward_paper_run.py runs one to its end); here its pass is recorded
    forward = first.paper_runs.get(mode=PaperTradingRun.MODE_FORWARD)
    assert forward.status == RunStatus.RUNNING and forward.target == staging
    assert forward.config["model_sha256"] == first.onnx_sha256
    walk(forward, RunStatus.PASSED, fields={"passed": True, "bars": PAPER_BARS})
    lifecycle.model_version_mark_paper_tested(
        model_version=first, paper_run=fresh(forward), actor=engineer
    )

    # a second person approves; the deployer deploys through the admin action
    lifecycle.model_version_approve(
        model_version=fresh(first), approved_by=approver, comment="checked"
    )
    client = Client(enforce_csrf_checks=True)
    client.force_login(deployer)
    changelist = reverse("admin:models_registry_modelversion_changelist")
    token = client.get(changelist).cookies["csrftoken"].value
    response = client.post(changelist, {
        "action": "deploy_versions", "_selected_action": [first.pk], "apply": "1",
        "target": production.pk, "force_reason": "", "csrfmiddlewaretoken": token,
    })  # fmt: skip
    assert response.status_code == 302
    queued = Deployment.objects.get(target=production)
    assert queued.status == DeploymentStatus.QUEUED
    assert queued.requested_by == deployer

    result = run_deployment(queued.pk)

    first_run = fresh(queued)
    assert result["status"] == "succeeded", describe(first_run)
    assert step_names(first_run) == ["verify_local", *DEPLOY_STEPS]
    assert f"sha256={first.onnx_sha256}" in first_run.log_tail
    production_host.assert_serves(registry_files(first))
    assert fresh(first).state == ModelState.IN_PRODUCTION
    assert run_deployment(queued.pk)["skipped"]  # a redelivered message does nothing

    # a newer version replaces it; the first retires
    second = versions.make()
    newer = command("deploy_model", second.name, "--version", str(second.version), "--target",
                    production.name, "--user", deployer.username, "--inline")  # fmt: skip
    assert newer["status"] == "succeeded", newer
    production_host.assert_serves(registry_files(second))
    assert fresh(second).state == ModelState.IN_PRODUCTION
    assert fresh(first).state == ModelState.RETIRED
    assert audit_data(first, "model_version_retired")["replaced_by"] == second.pk

    # roll back by command: the first is live again, the newer retired
    back = command("rollback_model", "--target", production.name, "--user", deployer.username,
                   "--comment", "newer one trades badly", "--inline")  # fmt: skip

    rollback = Deployment.objects.get(pk=back["deployment"])
    assert back["status"] == "succeeded", describe(rollback)
    assert (rollback.kind, rollback.model_version, rollback.previous_version) == (
        Deployment.KIND_ROLLBACK, fresh(first), fresh(second))  # fmt: skip
    production_host.assert_serves(registry_files(first))
    assert fresh(first).state == ModelState.IN_PRODUCTION
    assert fresh(second).state == ModelState.RETIRED
    assert audit_types(rollback)[0] == "rollback_requested"
    assert audit_data(rollback, "rollback_requested")["comment"] == "newer one trades badly"
    assert audit_data(rollback, "rollback_finished")["status"] == "succeeded"

    # deployment_status reads the host: consistent now ...
    status = command("deployment_status", "--target", production.name)
    label = f"127.0.0.1:{production_host.server.port}"
    assert status["consistent"] is True
    assert status["registry_sha256"] == first.onnx_sha256
    assert status["hosts"][label]["live_sha256"] == first.onnx_sha256
    # ... and a mismatch once someone swaps the model by hand
    production_host.install(registry_files(second))
    production_host.restart()
    production_host.wait_until_serving(second.onnx_sha256)
    with pytest.raises(CommandError, match="do not all serve the registry's version"):
        command("deployment_status", "--target", production.name)
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("deployment_status", "--target", production.name, stdout=out)
    assert f"live {second.onnx_sha256[:12]}" in out.getvalue()
    assert "MISMATCH" in out.getvalue()


# --------------------------------------------------------------------------- failures


@pytest.mark.django_db
def test_model_refused_at_start_up_is_rolled_back_automatically(
    host_factory, ssh_user_key, versions, people, baseline
):
    host = host_factory(baseline)
    production = ssh_target("production-ssh", Environment.PRODUCTION, [host], ssh_user_key)
    refused = versions.make(break_golden=True)

    deployment = deploy_now(refused, production, people["deployer"])

    assert deployment.status == DeploymentStatus.ROLLED_BACK, describe(deployment)
    assert "golden" in deployment.error
    failed = [step["name"] for step in deployment.steps if not step["ok"]]
    assert failed == ["health_check"]
    assert step_names(deployment)[-4:] == [
        "rollback_swap", "rollback_restart", "rollback_health_check", "cleanup"]  # fmt: skip
    assert deployment.log_tail
    host.assert_serves(baseline)
    assert fresh(refused).state == ModelState.APPROVED
    finished = audit_data(deployment, "deploy_finished")
    assert finished["status"] == "rolled_back" and "golden" in finished["reason"]
    assert "model_version_in_production" not in audit_types(refused)
    assert deployments.live_version_on_target(production) is None


@pytest.mark.django_db
def test_busy_target_and_suspended_approval_are_refused(
    host_factory, ssh_user_key, versions, people, baseline
):
    deployer = people["deployer"]
    host = host_factory(baseline)
    production = ssh_target("production-ssh", Environment.PRODUCTION, [host], ssh_user_key)
    first, second = versions.make(), versions.make()

    def request(version: ModelVersion) -> Deployment:
        return deployments.deployment_request(
            model_version=version, target=production, requested_by=deployer
        )

    running = deployments.deployment_request(
        model_version=first, target=production, requested_by=deployer, force_reason="not needed"
    )
    # the window is open: nothing was forced, so no "forced" reason is kept or audited
    assert running.forced_reason == ""
    assert audit_data(running, "deploy_requested")["forced_outside_window"] is None

    for claim in (False, True):  # refused while queued, then while running
        if claim:
            assert deployments.deployment_claim(running.pk, task_id=running.task_id) is not None
        with pytest.raises(
            deployments.DeploymentRefused, match=rf"busy with deployment #{running.pk}"
        ):
            request(second)
        assert list(Deployment.objects.filter(target=production)) == [fresh(running)]
        refusal = audit_data(second, "deployment_request_refused")
        assert f"#{running.pk}" in refusal["reason"]

    finished = deployments.deployment_execute(fresh(running))
    assert finished.status == DeploymentStatus.SUCCEEDED, describe(finished)
    host.assert_serves(registry_files(first))

    approval = lifecycle.current_approval(second)
    ApprovalSuspension.objects.create(approval=approval, reason="scheduled validation degraded")
    with pytest.raises(lifecycle.GateFailed, match="suspended"):
        request(second)
    assert not Deployment.objects.filter(target=production, model_version=second).exists()
    assert "suspended" in audit_data(second, "deployment_request_refused")["reason"]
    assert fresh(second).state == ModelState.APPROVED
    host.assert_serves(registry_files(first))


# --------------------------------------------------------------------------- windows


def closed_window_now() -> tuple[str, Any]:
    """A one-hour window opening two hours after the current hour, and when it opens."""
    now = timezone.now()
    opens = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    return f"{opens.hour:02d}:00-{opens.hour + 1:02d}:00", opens


@pytest.mark.django_db
def test_deployment_window_refuses_forces_and_schedules(
    host_factory, ssh_user_key, versions, people, baseline, django_capture_on_commit_callbacks
):
    deployer = people["deployer"]
    host = host_factory(baseline)
    spec, opens = closed_window_now()
    production = ssh_target(
        "production-ssh", Environment.PRODUCTION, [host], ssh_user_key, allowed_hours=spec
    )
    first, second = versions.make(), versions.make()

    with pytest.raises(deployments.DeploymentRefused) as refused:
        deployments.deployment_request(
            model_version=first, target=production, requested_by=deployer
        )
    assert f"next opens {opens:%Y-%m-%d %H:%M} UTC" in str(refused.value)
    assert not Deployment.objects.filter(target=production).exists()

    scheduled = deployments.deployment_request(
        model_version=second, target=production, requested_by=deployer, schedule_if_closed=True
    )
    assert (scheduled.status, scheduled.scheduled_for) == (DeploymentStatus.SCHEDULED, opens)
    forced = deployments.deployment_request(
        model_version=first, target=production, requested_by=deployer, force_reason="exchange fix"
    )
    assert (forced.status, forced.forced_reason) == (DeploymentStatus.QUEUED, "exchange fix")
    assert audit_data(forced, "deploy_requested")["forced_outside_window"] == "exchange fix"
    assert audit_data(scheduled, "deploy_requested")["forced_outside_window"] is None
    # the window opens while the forced one is still queued: the scheduled one waits
    assert deployments.start_due_deployments(now=opens + timedelta(minutes=1)) == []

    assert run_deployment(forced.pk)["status"] == "succeeded", describe(fresh(forced))
    host.assert_serves(registry_files(first))
    assert deployments.start_due_deployments(now=opens - timedelta(minutes=1)) == []
    with django_capture_on_commit_callbacks() as queued_tasks:
        started = deployments.start_due_deployments(now=opens + timedelta(minutes=1))
    assert started == [scheduled.pk]
    # one deploy task queued (the others on commit are the audit event's webhook)
    assert sum("start_due_deployments" in cb.__qualname__ for cb in queued_tasks) == 1
    assert fresh(scheduled).status == DeploymentStatus.QUEUED
    assert audit_data(scheduled, "deployment_window_opened")["new_status"] == "queued"

    # run it as the worker does (the task the callback would have sent)
    assert run_deployment(scheduled.pk)["status"] == "succeeded", describe(fresh(scheduled))
    host.assert_serves(registry_files(second))
    assert fresh(scheduled).previous_version == first  # what ran when it started
    assert fresh(second).state == ModelState.IN_PRODUCTION
    assert fresh(first).state == ModelState.RETIRED


# --------------------------------------------------------------------------- a killed worker


def kill_restart_scripts(host: FakeHost) -> None:
    """The hanging restart the killed worker left on the host (as a reboot of it would)."""
    for process in psutil.process_iter(["cmdline"]):
        if str(host.restart_script) in " ".join(process.info["cmdline"] or []):
            for child in [*process.children(recursive=True), process]:
                child.kill()


@pytest.mark.django_db(transaction=True)
def test_worker_killed_after_the_swap_is_reconciled_from_the_hosts(
    host_factory, ssh_user_key, versions, people, baseline, media_root
):
    host = host_factory(baseline)
    production = ssh_target("production-ssh", Environment.PRODUCTION, [host], ssh_user_key)
    version = versions.make()
    (host.root / "hang-once").touch()  # the restart hangs: the worker dies right after the swap
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "deploy_model", version.name, "--version",
         str(version.version), "--target", production.name, "--user",
         people["deployer"].username, "--inline"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url_for_subprocesses(),
             "MEDIA_ROOT": str(media_root)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and worker.poll() is None:
            # the restart script removes the switch as it starts hanging: swapped, restarting
            if not (host.root / "hang-once").exists():
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the deploy never reached the swap: {worker.communicate()[0][-3000:]!r}")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    kill_restart_scripts(host)
    left = Deployment.objects.get(target=production)
    assert left.status == DeploymentStatus.RUNNING
    assert host.model_files()[f"{version.name}.onnx"] == version.onnx_sha256  # swapped ...
    assert host.status()["model_sha256"] == baseline.onnx_sha256  # ... never restarted
    assert deployments.reconcile_stale_deployments() == []  # not stale yet by default

    finished = deployments.reconcile_stale_deployments(older_than=timedelta(0))

    assert [d.pk for d in finished] == [left.pk]
    done = fresh(left)
    assert done.status == DeploymentStatus.ROLLED_BACK, describe(done)
    assert "reconciled after the worker was lost" in done.error
    assert "reconcile_read" in step_names(done)
    host.assert_serves(baseline)  # the hand-installed model is back, not deleted
    assert fresh(version).state == ModelState.APPROVED
    assert audit_data(done, "deploy_finished")["status"] == "rolled_back"


# --------------------------------------------------------------------------- a local target


def small_store(data_dir: Path, folder: Path, replay_from: pd.Timestamp) -> Path:
    """A store with the candles and Fear & Greed values around the replay start."""
    candles = read_kline_csv(data_dir / "BTCUSDT-1h.csv", "1h")
    window = candles[
        (candles.index >= replay_from - pd.Timedelta(days=20))
        & (candles.index < replay_from + pd.Timedelta(days=10))
    ]
    merge_candles(folder, "BTCUSDT", "1h", window)
    merge_sentiment(folder, read_sentiment_csv(data_dir / "fear_greed_index.csv"))
    return folder


@pytest.mark.django_db
def test_local_target_takes_a_deploy_and_a_rollback(
    engine, shared_data_dir, tmp_path, versions, people
):
    setup, _ = engine
    if not setup.real:
        pytest.skip("the stand-in engine was asked for by name; the local target runs the real one")
    root = tmp_path / "local-host" / "opt"
    target = local_target_ensure(
        name="local-production",
        environment=Environment.PRODUCTION,
        install_root=root,
        replay_from=setup.replay_from.isoformat(),
        speed=60,
        data_dir=small_store(shared_data_dir, tmp_path / "store", setup.replay_from),
    )
    host = FakeHost(root=root, upload_dir=Path(target.upload_dir), spec=HostSpec("localhost"))
    first, second = versions.make(), versions.make()
    try:
        onto_empty = deploy_now(first, target, people["deployer"])
        assert onto_empty.status == DeploymentStatus.SUCCEEDED, describe(onto_empty)
        host.assert_serves(registry_files(first))
        replaced = deploy_now(second, target, people["deployer"])
        assert replaced.status == DeploymentStatus.SUCCEEDED, describe(replaced)
        host.assert_serves(registry_files(second))

        back = deployments.rollback_request(
            target=target, requested_by=people["deployer"], comment="demo rollback"
        )
        run_deployment(back.pk)

        back = fresh(back)
        assert back.status == DeploymentStatus.SUCCEEDED, describe(back)
        host.assert_serves(registry_files(first))
        assert fresh(first).state == ModelState.IN_PRODUCTION
        assert fresh(second).state == ModelState.RETIRED
        assert deployments.target_status(target)["consistent"] is True
    finally:
        local_service.stop(root)
    assert local_service.running_pid(root) is None


# --------------------------------------------------------------------------- policy costs


def host_costs(host: FakeHost, suffix: str = "") -> str | None:
    path = host.model_dir / f"{MODEL_NAME}_costs.json{suffix}"
    return path.read_text() if path.exists() else None


@pytest.mark.django_db
def test_hosts_trade_at_the_policy_costs_shipped_with_the_model(
    host_factory, ssh_user_key, versions, people, baseline
):
    """The costs file goes out with the model, equals the policy in force, comes back with the
    previous model when a deploy is rolled back, and an engine not trading at it is flagged."""
    deployer = people["deployer"]
    host = host_factory(baseline)
    production = ssh_target("production-costs", Environment.PRODUCTION, [host], ssh_user_key)
    first = versions.make()
    policy_a = policy_set({"fee_bps": 12.0, "slippage_bps": 6.0}, scope=first.name, label="A")

    deployed = deploy_now(first, production, deployer)

    assert deployed.status == DeploymentStatus.SUCCEEDED, describe(deployed)
    host.assert_serves(registry_files(first))
    shipped_a = host_costs(host)
    assert shipped_a is not None
    assert json.loads(shipped_a) == {
        "model_name": first.name, "fee_bps": 12.0, "slippage_bps": 6.0,
        "policy_id": policy_a.pk, "policy_number": policy_a.number, "policy_label": "A",
        "policy_scope": first.name, "policy_hash": policy_a.content_hash,
    }  # fmt: skip
    engine = host.status()["costs"]
    assert (engine["fee_bps"], engine["slippage_bps"], engine["source"]) == (12.0, 6.0, "policy")
    assert engine["policy_hash"] == policy_a.content_hash
    status = deployments.target_status(production)
    (report,) = status["hosts"].values()
    assert report["costs_problem"] is None and report["costs_stale"] is None

    # The policy's costs go up; a deploy the engine refuses is rolled back, and the host is
    # left with the costs its previous model ran with, byte for byte.
    policy_b = policy_set({"fee_bps": 15.0}, scope=first.name, label="B")
    refused = versions.make(break_golden=True)

    rolled = deploy_now(refused, production, deployer)

    assert rolled.status == DeploymentStatus.ROLLED_BACK, describe(rolled)
    host.assert_serves(dataclasses.replace(registry_files(first), costs_json=shipped_a))
    assert host_costs(host) == shipped_a
    assert host.status()["costs"]["policy_hash"] == policy_a.content_hash
    (report,) = deployments.target_status(production)["hosts"].values()
    assert report["costs_problem"] is None
    assert policy_b.content_hash[:12] in report["costs_stale"]

    # The next deploy ships policy B; the kept backup is A.
    second = versions.make()
    assert deploy_now(second, production, deployer).status == DeploymentStatus.SUCCEEDED
    assert json.loads(host_costs(host) or "{}")["policy_hash"] == policy_b.content_hash
    assert json.loads(host_costs(host) or "{}")["fee_bps"] == 15.0
    assert host_costs(host, ".backup") == shipped_a
    assert host.status()["costs"]["fee_bps"] == 15.0

    # An engine told to trade at other costs (a higher fee, which the engine allows) is
    # reported after the deploy: a target attention flag, and deploys wait for a deployer.
    script = host.restart_script.read_text()
    host.restart_script.write_text(script.replace("--model ", "--fee-bps 20 --model ", 1))
    third = versions.make()

    flagged = deploy_now(third, production, deployer)

    assert flagged.status == DeploymentStatus.SUCCEEDED, describe(flagged)
    assert host.status()["costs"]["fee_bps"] == 20.0
    (line,) = attention.open_attention(production)
    assert f"after deployment #{flagged.pk}" in line
    assert "fee_bps 20.0 (shipped 15.0)" in line
    raised = audit_data(production, "target_attention_raised")
    assert raised["hosts"]["shipped_costs"]["policy_hash"] == policy_b.content_hash
    assert "not trading at the shipped policy costs" in inconsistency(
        deployments.target_status(production)
    )
