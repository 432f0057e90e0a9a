"""The registry holds the hosts' engines to the policy costs it shipped them (issue 25).

The hosts themselves are real SSH servers in tests/deployment (the costs file travels,
is rolled back, and a deploy to an engine at other costs raises a flag). Here the host read
is a stand-in, so each verdict of the registry is checked on its own: the post-deploy
comparison, the host check's fields, the beat's flag and deployment_status's exit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from deployment import runner
from deployment.steps import EngineStatus, HostState
from models_registry.models import Deployment, DeploymentStatus, ModelState
from models_registry.policy import policy_in_force
from models_registry.services import attention, deployments
from models_registry.services.attention_checks import production_hosts_check
from tests.support.policy import policy_set
from tests.support.walk import create_in

pytestmark = pytest.mark.django_db


def in_production(version: Any, target: Any, deployer: Any) -> Deployment:
    deployment = create_in(
        Deployment,
        DeploymentStatus.RUNNING,
        target=target,
        model_version=version,
        requested_by=deployer,
        sha256=version.onnx_sha256,
    )
    return deployments.deployment_finish(deployment, status=DeploymentStatus.SUCCEEDED)


def host_reads(monkeypatch: pytest.MonkeyPatch, version: Any, engine_costs: Any) -> None:
    """Every host serves ``version`` with the shipped costs file; its engine reports
    ``engine_costs``."""
    shipped = deployments.policy_costs_document(version.name)
    state = HostState(
        host="h1",
        onnx_sha256=version.onnx_sha256,
        metadata_sha256=version.metadata_sha256,
        metadata_onnx_sha256=version.onnx_sha256,
        metadata_version=version.version,
        expected_sha256=version.onnx_sha256,
        backup_onnx_sha256=None,
        backup_metadata_sha256=None,
        status=EngineStatus(
            {
                "pid": 1,
                "state": "running",
                "model_name": version.name,
                "model_sha256": version.onnx_sha256,
                "costs": engine_costs,
            },
            alive=True,
        ),
        costs_sha256="0" * 64,
        costs_document=shipped,
    )
    monkeypatch.setattr(
        deployments.runner,
        "read_status",
        lambda spec, name: {"h1": runner.HostStatusReport("h1", state)},
    )


def at_policy(version: Any) -> dict[str, Any]:
    shipped = deployments.policy_costs_document(version.name)
    return {key: shipped[key] for key in ("fee_bps", "slippage_bps", "policy_hash")}


def test_a_host_at_the_shipped_costs_is_consistent(
    version_factory: Any, deployer: Any, production_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = version_factory(ModelState.APPROVED)
    in_production(version, production_target, deployer)
    host_reads(monkeypatch, version, {**at_policy(version), "source": "policy"})

    status = deployments.target_status(production_target)

    assert status["consistent"] is True
    assert status["hosts"]["h1"]["costs_problem"] is None
    assert status["hosts"]["h1"]["costs_stale"] is None
    assert production_hosts_check() == [
        {"target": production_target.name, "problem": "", "flagged": None}
    ]


def test_an_engine_at_other_costs_is_flagged_by_the_beat_and_fails_deployment_status(
    version_factory: Any, deployer: Any, production_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = version_factory(ModelState.APPROVED)
    in_production(version, production_target, deployer)
    host_reads(monkeypatch, version, {**at_policy(version), "fee_bps": 0.0})

    (result,) = production_hosts_check()

    assert "not trading at the shipped policy costs" in result["problem"]
    assert "fee_bps 0.0 (shipped 10.0)" in result["problem"]
    assert result["flagged"] is not None
    assert "fee_bps 0.0" in attention.open_attention(production_target)[0]
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("deployment_status", "--target", production_target.name, stdout=out)
    assert "COSTS: engine trades at fee_bps 0.0 (shipped 10.0)" in out.getvalue()


def test_a_policy_changed_since_the_deploy_is_reported_stale_not_blocking(
    version_factory: Any, deployer: Any, production_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = version_factory(ModelState.APPROVED)
    in_production(version, production_target, deployer)
    host_reads(monkeypatch, version, {**at_policy(version), "source": "policy"})
    newer = policy_set({"fee_bps": 14.0}, scope=version.name, label="dearer")

    status = deployments.target_status(production_target)

    assert status["consistent"] is True
    stale = status["hosts"]["h1"]["costs_stale"]
    assert newer.content_hash[:12] in stale and "deploy again" in stale
    assert production_hosts_check()[0]["flagged"] is None


def test_the_post_deploy_comparison_reads_each_hosts_health_check(
    version_factory: Any,
) -> None:
    version = version_factory(ModelState.APPROVED)
    shipped = deployments.policy_costs_json(version.name)
    policy = policy_in_force(version.name)
    now = datetime.now(UTC)

    def health(host: str, costs: Any) -> runner.StepRecord:
        return runner.StepRecord(
            "health_check", host, now, now, True, "ok", data={"status": {"costs": costs}}
        )

    outcome = runner.DeploymentOutcome(
        deployment_id="d1", target="t", operation="deploy", status="succeeded",
        onnx_sha256=version.onnx_sha256, reason="",
        steps=[
            health("good", {"fee_bps": 10.0, "slippage_bps": 5.0,
                            "policy_hash": policy.content_hash}),
            health("dear", {"fee_bps": 20.0, "slippage_bps": 5.0,
                            "policy_hash": policy.content_hash}),
            health("silent", None),
        ],
        hosts={label: runner.HostOutcome(label, "succeeded")
               for label in ("good", "dear", "silent", "unchecked")},
        started_at=now, finished_at=now,
    )  # fmt: skip

    problems = deployments.engine_costs_problems(outcome, shipped)

    assert set(problems) == {"dear", "silent", "unchecked"}
    assert "fee_bps 20.0 (shipped 10.0)" in problems["dear"]
    assert "does not report" in problems["silent"] and "does not report" in problems["unchecked"]
