"""The fleet home on the admin index, and host checks on record (issue 15)."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from deployment.runner import HostStatusReport
from models_registry.models import AuditEvent, DeploymentStatus, ModelState
from models_registry.services import deployments
from models_registry.services.audit import audit_event_record
from models_registry.services.host_checks import HOST_CHECK_EVENT
from tests.registry.conftest import finished_deployment

pytestmark = pytest.mark.django_db


@pytest.fixture
def unreachable_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        deployments.runner,
        "read_status",
        lambda spec, name: {"h1:22": HostStatusReport("h1:22", None, "connection refused")},
    )


@pytest.fixture
def no_ssh_on_page_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the fleet home opened a host connection")

    monkeypatch.setattr(deployments.runner, "read_status", refuse)


def index(user: Any) -> str:
    client = Client()
    client.force_login(user)
    page = client.get(reverse("admin:index"))
    assert page.status_code == 200
    return page.text


def fleet_row(html: str, target: str) -> str:
    table = html.split('id="fleet-home"', 1)[1].split("</table>", 1)[0]
    return table.split(f'data-target="{target}"', 1)[1].split("</tr>", 1)[0]


def test_deployment_status_records_what_it_saw_as_one_host_check_event(
    production_target: Any, unreachable_hosts: None
) -> None:
    with pytest.raises(CommandError, match="do not all serve"):
        call_command("deployment_status", "--target", production_target.name, stdout=StringIO())
    events = AuditEvent.objects.filter(event_type=HOST_CHECK_EVENT)
    assert events.count() == 1
    event = events.get()
    assert event.object_type == "DeploymentTarget" and event.object_id == str(production_target.pk)
    assert event.data["hosts"]["h1:22"]["error"] == "connection refused"
    assert event.data["consistent"] is False and event.data["source"] == "deployment_status"


def test_fleet_home_shows_served_version_health_last_deployment_and_a_mismatch_in_red(
    version_factory: Any,
    deployer: Any,
    production_target: Any,
    unreachable_hosts: None,
) -> None:
    version = version_factory(ModelState.IN_PRODUCTION)
    # The host is unreachable: the command says so and exits non-zero.
    with pytest.raises(CommandError):
        call_command("deployment_status", "--target", production_target.name, stdout=StringIO())
    row = fleet_row(index(deployer), production_target.name)
    assert str(version) in row and version.onnx_sha256[:12] in row
    assert version.get_health_display() in row
    assert "Succeeded" in row.split('class="outcome"', 1)[1].split("</td>", 1)[0]
    host_cell = row.split('class="host-check', 1)[1]
    assert host_cell.startswith(" mismatch") and "unreachable (connection refused)" in host_cell


def test_a_consistent_check_is_not_red_and_a_newer_deployment_makes_it_stale(
    version_factory: Any, deployer: Any, production_target: Any, no_ssh_on_page_load: None
) -> None:
    version = version_factory(ModelState.IN_PRODUCTION)
    audit_event_record(
        event_type=HOST_CHECK_EVENT,
        obj=production_target,
        data={
            "registry_sha256": version.onnx_sha256,
            "consistent": True,
            "hosts": {"h1:22": {"matches_registry": True, "live_sha256": version.onnx_sha256}},
        },
    )
    row = fleet_row(index(deployer), production_target.name)
    assert 'class="host-check"' in row and "every host serves the registry&#x27;s version" in row
    newer = version_factory(ModelState.APPROVED)
    finished_deployment(newer, production_target, deployer)
    row = fleet_row(index(deployer), production_target.name)
    assert 'class="host-check mismatch"' in row and "deployed since this check" in row
    assert str(newer) in row.split('class="served"', 1)[1].split("</td>", 1)[0]


def test_a_failed_last_deployment_is_red_and_never_checked_hosts_say_so(
    version_factory: Any, deployer: Any, production_target: Any, no_ssh_on_page_load: None
) -> None:
    version = version_factory(ModelState.APPROVED)
    finished_deployment(version, production_target, deployer, status=DeploymentStatus.FAILED)
    row = fleet_row(index(deployer), production_target.name)
    assert 'class="outcome mismatch"' in row and "hosts never checked" in row
    assert "nothing" in row.split('class="served"', 1)[1].split("</td>", 1)[0]


def test_check_hosts_button_is_for_deployers_and_records_a_check(
    production_target: Any,
    deployer: Any,
    auditor: Any,
    unreachable_hosts: None,
    settings: Any,
) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from tradebot.celery import app

    app.conf.task_always_eager = True
    try:
        assert "Check hosts" not in fleet_row(index(auditor), production_target.name)
        assert "Check hosts" in fleet_row(index(deployer), production_target.name)
        url = reverse(
            "admin:models_registry_deploymenttarget_check_hosts", args=[production_target.pk]
        )
        client = Client()
        client.force_login(auditor)
        assert client.post(url).status_code == 403
        assert not AuditEvent.objects.filter(event_type=HOST_CHECK_EVENT).exists()
        client.force_login(deployer)
        assert client.post(url).status_code == 302
        event = AuditEvent.objects.get(event_type=HOST_CHECK_EVENT)
        assert event.actor_repr == deployer.get_username() and event.data["source"] == "admin"
    finally:
        app.conf.task_always_eager = False


def test_fleet_home_query_count_is_constant_in_targets_and_deployments(
    version_factory: Any, deployer: Any, production_target: Any
) -> None:
    from models_registry.models import DeploymentTarget, Environment

    client = Client()
    client.force_login(deployer)
    url = reverse("admin:index")
    finished_deployment(version_factory(ModelState.APPROVED), production_target, deployer)
    audit_event_record(event_type=HOST_CHECK_EVENT, obj=production_target, data={"hosts": {}})
    client.get(url)

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    few = count()
    for n in range(4):
        target = DeploymentTarget.objects.create(
            name=f"prod-{n}", environment=Environment.PRODUCTION, is_local=True
        )
        finished_deployment(version_factory(ModelState.APPROVED), target, deployer)
        audit_event_record(event_type=HOST_CHECK_EVENT, obj=target, data={"hosts": {}})
    assert count() == few
