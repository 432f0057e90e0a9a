# ruff: noqa: F811 - the fixtures are imported from test_registry_deployments
"""Issue 14 finding 1 through the registry: commands, real SSH host, real engine.

A production host serving `btcusdt_sentiment` is asked to take an approved
`btcusdt_price`: refused before any upload, naming both models, in one readable
sentence; the host still serves exactly one complete model and the registry
agrees with it (`deployment_status`).
"""

from __future__ import annotations

import io
import json

from django.core.management import call_command
from django.core.management.base import CommandError

from models_registry.models import Deployment, DeploymentStatus, Environment, ModelState
from tests.deployment.registry_support import register_version, registry_files, ssh_target, walk_to
from tests.deployment.support import MODEL_NAME
from tests.deployment.test_production_safety import OTHER_NAME, renamed
from tests.deployment.test_registry_deployments import (  # noqa: F401 - pytest fixtures
    baseline,
    media_root,
    people,
    versions,
)


def run_command(name: str, *args: str) -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command(name, *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def test_another_model_on_a_production_host_is_refused_and_the_registry_equals_the_host(
    host_factory,
    ssh_user_key,
    versions,
    people,
    baseline,
    models,
    tmp_path,
):
    deployer = people["deployer"]
    host = host_factory(baseline)
    production = ssh_target("production-ssh", Environment.PRODUCTION, [host], ssh_user_key)
    sentiment = versions.make()
    output, error = run_command(
        "deploy_model", sentiment.name, "--version", str(sentiment.version),
        "--target", production.name, "--user", deployer.username, "--inline",
    )  # fmt: skip
    assert error is None, output
    # each step printed as it happened, then the engine's start-up lines
    lines = output.splitlines()
    printed = [line.split("]", 1)[1].split()[1] for line in lines if line.startswith("  [")]
    # host_identity (issue 26): the registry grants the hosts before anything is uploaded
    assert printed[:5] == ["verify_local", "connect", "preflight", "host_identity", "upload"]
    assert "engine start-up:" in output
    assert f"model loaded: {MODEL_NAME}" in output.split("engine start-up:")[1]

    price_files = renamed(models.make(9), OTHER_NAME, tmp_path)
    price = register_version(price_files, tmp_path / "price-source", people["engineer"])
    assert price.name == OTHER_NAME
    price = walk_to(
        price, ModelState.APPROVED, engineer=people["engineer"], approver=people["approver"],
        staging_records=versions._staging_records,
    )  # fmt: skip

    output, error = run_command(
        "deploy_model", price.name, "--version", str(price.version),
        "--target", production.name, "--user", deployer.username, "--inline",
    )  # fmt: skip

    assert error is not None
    refused = Deployment.objects.filter(model_version=price, target=production).get()
    assert refused.status == DeploymentStatus.FAILED
    assert MODEL_NAME in refused.error and OTHER_NAME in refused.error
    # one readable sentence: no remote script in the reason
    assert "@@section" not in refused.error and "sha256sum" not in refused.error
    assert len(refused.error) < 400
    names = [step["name"] for step in refused.steps]
    assert "upload" not in names and names[-2:] == ["preflight", "cleanup"]
    assert "FAIL" in output and OTHER_NAME in output

    host.assert_serves(registry_files(sentiment))
    out = io.StringIO()
    call_command("deployment_status", "--target", production.name, "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["consistent"] is True, report
    assert report["registry_sha256"] == sentiment.onnx_sha256
