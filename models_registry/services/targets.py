"""Deployment targets and hosts are audited configuration.

Every create or edit goes through ``target_save`` / ``host_save``: the row is locked,
the old and new values are written into one audit event, in one transaction. A
host (address, port and install root, as the target resolves them) belongs to one
target only, so a "staging" target can never point at a production host.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Model

from models_registry.models import DeploymentHost, DeploymentTarget, RegistryError
from models_registry.services.audit import audit_event_record

_NOT_AUDITED = {"id", "created_at"}


class TargetChangeRefused(RegistryError):
    """The change would make a host serve two targets; the message names both."""


def config_values(obj: Model) -> dict[str, Any]:
    return {
        f.attname: getattr(obj, f.attname)
        for f in obj._meta.concrete_fields
        if f.attname not in _NOT_AUDITED
    }


def target_save(*, target: DeploymentTarget, actor: AbstractBaseUser | None) -> DeploymentTarget:
    """Create or edit a target; one audit event with the old and new values."""
    with transaction.atomic():
        old = _locked_values(target)
        target.save()
        for host in target.hosts.select_for_update():
            _refuse_shared_host(host)
        _record(target, actor, old, "deployment_target")
    return target


def host_save(*, host: DeploymentHost, actor: AbstractBaseUser | None) -> DeploymentHost:
    """Create or edit a host of a target, refusing one another target already uses."""
    with transaction.atomic():
        old = _locked_values(host)
        _refuse_shared_host(host)
        host.save()
        _record(host, actor, old, "deployment_host", target=host.target.name)
    return host


def host_identity(host: DeploymentHost) -> tuple[str, int, str]:
    """Address, port and install root as a deploy to this host would resolve them."""
    target = host.target
    return (
        host.hostname.strip().lower(),
        host.port or target.ssh_port,
        (host.install_root or target.install_root).rstrip("/"),
    )


def _refuse_shared_host(host: DeploymentHost) -> None:
    mine = host_identity(host)
    others = DeploymentHost.objects.exclude(target_id=host.target_id).select_related("target")
    for other in others.filter(hostname__iexact=host.hostname.strip()):
        if host_identity(other) == mine:
            raise TargetChangeRefused(
                f"host {mine[0]}:{mine[1]} {mine[2]} already belongs to target "
                f"{other.target.name} ({other.target.environment}); a host serves one target."
            )


def _locked_values(obj: Model) -> dict[str, Any] | None:
    if obj.pk is None:
        return None
    locked = type(obj).objects.select_for_update().filter(pk=obj.pk).first()
    return config_values(locked) if locked is not None else None


def _record(
    obj: Model, actor: AbstractBaseUser | None, old: dict[str, Any] | None, kind: str, **extra: Any
) -> None:
    new = config_values(obj)
    changed = sorted(k for k in new if old is None or old.get(k) != new[k])
    audit_event_record(
        event_type=f"{kind}_{'created' if old is None else 'changed'}",
        actor=actor,
        obj=obj,
        data={"old": old, "new": new, "changed": changed, **extra},
    )
