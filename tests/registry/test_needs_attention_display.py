"""A needs-attention deployment is shown in red in the admin list and by deployment_status,
and deployment_status exits non-zero for it until a later success repairs the target."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from models_registry.models import Deployment, DeploymentStatus, ModelState
from models_registry.services import deployments
from tests.support.walk import create_in

pytestmark = pytest.mark.django_db

RED = "\x1b[31"  # the start of Django's ERROR style (bold red), whatever the extra codes


def finished(version: Any, target: Any, deployer: Any, *, needs_attention: bool) -> Deployment:
    deployment = create_in(
        Deployment,
        DeploymentStatus.RUNNING,
        target=target,
        model_version=version,
        requested_by=deployer,
        sha256=version.onnx_sha256,
    )
    return deployments.deployment_finish(
        deployment,
        status=DeploymentStatus.ROLLED_BACK if needs_attention else DeploymentStatus.SUCCEEDED,
        reason="engine did not come back" if needs_attention else "",
        needs_attention=needs_attention,
    )


@pytest.fixture
def no_hosts_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hosts' own report is tested against real SSH hosts elsewhere; here only the
    # registry's flag decides the verdict.
    monkeypatch.setattr(deployments.runner, "read_status", lambda spec, name: {})


def status_output(target: Any) -> tuple[str, str | None]:
    out = StringIO()
    try:
        call_command("deployment_status", "--target", target.name, stdout=out, force_color=True)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


def test_deployment_status_prints_needs_attention_in_red_and_fails(
    version_factory: Any, deployer: Any, production_target: Any, no_hosts_read: None
) -> None:
    version = version_factory(ModelState.APPROVED)
    flagged = finished(version, production_target, deployer, needs_attention=True)
    assert flagged.status == DeploymentStatus.NEEDS_ATTENTION
    output, error = status_output(production_target)
    line = next(x for x in output.splitlines() if "NEEDS ATTENTION" in x)
    assert RED in line and f"#{flagged.pk}" in line
    assert error is not None and f"#{flagged.pk} NEEDS ATTENTION" in error


def test_a_later_success_clears_the_needs_attention_verdict(
    version_factory: Any, deployer: Any, production_target: Any, no_hosts_read: None
) -> None:
    finished(
        version_factory(ModelState.APPROVED), production_target, deployer, needs_attention=True
    )
    finished(
        version_factory(ModelState.APPROVED), production_target, deployer, needs_attention=False
    )
    output, error = status_output(production_target)
    assert "NEEDS ATTENTION" not in output
    assert error is None


def test_the_admin_list_shows_needs_attention_in_red(
    version_factory: Any, deployer: Any, production_target: Any, admin_client: Any
) -> None:
    version = version_factory(ModelState.APPROVED)
    flagged = finished(version, production_target, deployer, needs_attention=True)
    ok = finished(
        version_factory(ModelState.APPROVED), production_target, deployer, needs_attention=False
    )
    page = admin_client.get(reverse("admin:models_registry_deployment_changelist"))
    html = page.content.decode()
    assert page.status_code == 200
    assert html.count('class="needs-attention"') == 1
    assert "color:#ba2121" in html
    assert ok.pk != flagged.pk
