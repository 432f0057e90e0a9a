"""Deployment targets and hosts are audited configuration.

Every create or edit goes through ``target_save`` / ``host_save``: the row is locked,
the old and new values are written into one audit event, in one transaction. A
host (address, port and install root, as the target resolves them) belongs to one
target only, so a "staging" target can never point at a production host.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from models_registry.events import EventType
from models_registry.models import (
    DeploymentHost,
    DeploymentTarget,
    Environment,
    RegistryError,
    TargetChange,
    host_identity_key,
)
from models_registry.services import host_identity
from models_registry.services.audit import audit_event_record
from models_registry.transitions import TARGET_CHANGE_STATUS, transition

_NOT_AUDITED = {"id", "created_at"}
DEPLOY_PERMISSION = "models_registry.deploy_modelversion"
# What decides which machines a production deploy touches and what runs there as root.
GUARDED_TARGET_FIELDS = frozenset(
    {
        "environment", "is_local", "ssh_user", "ssh_port", "ssh_key_path", "known_hosts",
        "install_root", "model_dir", "upload_dir", "service_name", "restart_command",
        "stop_command", "log_command", "status_file", "check_command",
    }
)  # fmt: skip
GUARDED_HOST_FIELDS = frozenset(
    {"target_id", "hostname", "port", "install_root", "upload_dir", "enabled"}
)


class TargetChangeRefused(RegistryError):
    """The change would make a host serve two targets; the message names both."""


def config_values(obj: Model) -> dict[str, Any]:
    return {
        f.attname: getattr(obj, f.attname)
        for f in obj._meta.concrete_fields
        if f.attname not in _NOT_AUDITED
    }


def target_save(*, target: DeploymentTarget, actor: User | None) -> DeploymentTarget:
    """Create or edit a target; one audit event with the old and new values."""
    with transaction.atomic():
        old = _locked_values(target)
        if old is not None and old["environment"] == Environment.PRODUCTION:
            _refuse_unconfirmed(target, old, GUARDED_TARGET_FIELDS)
        try:
            host_identity.refuse_local_root_taken(target)
        except host_identity.SameMachineRefused as exc:
            raise TargetChangeRefused(str(exc)) from exc
        target.save()
        # A new default port or install root moves every host that inherits it: re-check
        # each, and refresh the identity column the database's unique constraint holds.
        for host in target.hosts.select_for_update():
            _refuse_shared_host(host)
            host.save(update_fields=["identity"])
        _record(target, actor, old, _TARGET_EVENTS)
    return target


def host_save(*, host: DeploymentHost, actor: User | None) -> DeploymentHost:
    """Create or edit a host of a target, refusing one another target already uses."""
    with transaction.atomic():
        old = _locked_values(host)
        was_production = old is not None and (
            DeploymentTarget.objects.get(pk=old["target_id"]).environment == Environment.PRODUCTION
        )
        if was_production or host.target.environment == Environment.PRODUCTION:
            _refuse_unconfirmed(host, old, GUARDED_HOST_FIELDS)
        _refuse_shared_host(host)
        host.save()
        _record(host, actor, old, _HOST_EVENTS, target=host.target.name)
    return host


def _refuse_shared_host(host: DeploymentHost) -> None:
    """Refuse a host another already is, by its spelling normalised (loopback, case, IPv6
    forms, root paths: deployment/identity.py) and by what its name resolves to."""
    mine = host_identity_key(host)
    others = DeploymentHost.objects.exclude(pk=host.pk).select_related("target")
    other = others.filter(identity=mine).first()
    if other is not None:
        raise TargetChangeRefused(
            f"host {host.hostname.strip()}:{host.port or host.target.ssh_port} already belongs "
            f"to target {other.target.name} ({other.target.environment}) as {other} (both are "
            f"{mine}); a host serves one target."
        )
    try:
        host_identity.refuse_same_machine_by_name(host)
    except host_identity.SameMachineRefused as exc:
        raise TargetChangeRefused(str(exc)) from exc


def _locked_values(obj: Model) -> dict[str, Any] | None:
    if obj.pk is None:
        return None
    locked = type(obj)._default_manager.select_for_update().filter(pk=obj.pk).first()
    return config_values(locked) if locked is not None else None


# (created, changed) events of a target and of a host.
_TARGET_EVENTS = (EventType.DEPLOYMENT_TARGET_CREATED, EventType.DEPLOYMENT_TARGET_CHANGED)
_HOST_EVENTS = (EventType.DEPLOYMENT_HOST_CREATED, EventType.DEPLOYMENT_HOST_CHANGED)


def _record(
    obj: Model,
    actor: User | None,
    old: dict[str, Any] | None,
    events: tuple[EventType, EventType],
    **extra: Any,
) -> None:
    new = config_values(obj)
    changed = sorted(k for k in new if old is None or old.get(k) != new[k])
    audit_event_record(
        event_type=events[0] if old is None else events[1],
        actor=actor,
        obj=obj,
        data={"old": old, "new": new, "changed": changed, **extra},
    )


def _refuse_unconfirmed(obj: Model, old: dict[str, Any] | None, guarded: frozenset[str]) -> None:
    new = config_values(obj)
    touched = sorted(k for k in guarded if old is None or old.get(k) != new.get(k))
    if touched:
        raise TargetChangeRefused(
            f"{obj}: {', '.join(touched)} of a production target change only when a second "
            "deployer confirms it: propose the change (target_change_propose)."
        )


# --- four eyes on production targets -----------------------------------------------------


def target_change_propose(
    *,
    target: DeploymentTarget,
    proposed_by: User,
    values: dict[str, Any],
    host: DeploymentHost | None = None,
    new_host: bool = False,
) -> TargetChange:
    """Record a pending change of a production target's settings or of one of its hosts."""
    _require_deployer(proposed_by, "propose a production target change")
    kind = "host" if host is not None or new_host else "target"
    allowed = GUARDED_HOST_FIELDS if kind == "host" else GUARDED_TARGET_FIELDS
    unknown = sorted(set(values) - allowed - _UNGUARDED_OK[kind])
    if unknown or not values:
        raise TargetChangeRefused(f"cannot propose {kind} fields {unknown or 'none'}.")
    with transaction.atomic():
        change = TargetChange.objects.create(
            target=target, host=host, kind=kind, values=values, proposed_by=proposed_by
        )
        audit_event_record(
            event_type="deployment_target_change_proposed",
            actor=proposed_by,
            obj=change,
            data={"target": target.name, "host": host.pk if host else None, "values": values},
        )
    return change


_UNGUARDED_OK = {"target": frozenset({"allowed_hours", "parallelism"}), "host": frozenset()}


def target_change_confirm(*, change: TargetChange, confirmed_by: User) -> TargetChange:
    """A second deployer confirms: the change is applied with one audit event (old and new)."""
    _require_deployer(confirmed_by, "confirm a production target change")
    with transaction.atomic():
        locked = TargetChange.objects.select_for_update().get(pk=change.pk)
        if locked.status != TargetChange.STATUS_PENDING:
            raise TargetChangeRefused(f"{locked} is {locked.status}; it cannot be applied again.")
        if locked.proposed_by_id == confirmed_by.pk:
            raise TargetChangeRefused(
                f"{confirmed_by.get_username()} proposed {locked}; a second person confirms it."
            )
        subject = _change_subject(locked)
        old = config_values(subject) if subject.pk else None
        for name, value in locked.values.items():
            setattr(subject, name, value)
        if isinstance(subject, DeploymentHost):
            _refuse_shared_host(subject)
        subject.save()
        new = config_values(subject)
        return transition(
            machine=TARGET_CHANGE_STATUS,
            row=locked,
            to=TargetChange.STATUS_APPLIED,
            event=EventType.DEPLOYMENT_TARGET_CHANGE_APPLIED,
            actor=confirmed_by,
            fields={"confirmed_by": confirmed_by, "confirmed_at": timezone.now()},
            data={
                "target": locked.target.name,
                "subject": f"{type(subject).__name__} {subject.pk}",
                "proposed_by": locked.proposed_by.get_username(),
                "old": old,
                "new": new,
                "changed": sorted(k for k in new if old is None or old.get(k) != new[k]),
            },
        )


def _change_subject(change: TargetChange) -> Model:
    if change.kind == "target":
        return DeploymentTarget.objects.select_for_update().get(pk=change.target_id)
    if change.host_id is not None:
        return DeploymentHost.objects.select_for_update().get(pk=change.host_id)
    return DeploymentHost(target=change.target)


def _require_deployer(user: User, what: str) -> None:
    if not user.has_perm(DEPLOY_PERMISSION):
        raise TargetChangeRefused(f"{user.get_username()} may not {what}: needs the deployer role.")
