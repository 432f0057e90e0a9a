"""Hosts are machines: one target per machine and root, one deploy per machine at a time.

At creation (``targets.host_save`` / ``target_save``) what spelling can tell is checked:
the normalised spelling is the host's ``identity`` column (unique in the database), and
a name is resolved so that two names of one address, or a name of this machine, are
caught too. At every deploy the hosts themselves say what they are (deployment/
identity.py) and ``host_claim`` decides, on the deploy's own thread and before
anything is uploaded:

- a host that is the same machine and root as an enabled host of another target (or
  another host of this one) is refused, naming both targets;
- the machine and its root are locked for this deployment (``HostLock`` rows, unique
  by key): a second deploy reaching that machine through any target is refused while
  this one runs, and may go once it has finished;
- what each host said is recorded (``ObservedHost``) for the next comparison.

The lock is a row, not a session or advisory lock, so a dropped database connection
mid-deploy does not release it; it is free once its deployment is finished.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import IntegrityError, transaction
from django.db.models import Q

from deployment.identity import (
    LOOPBACK,
    HostClaimRefused,
    HostIdentity,
    canonical_root,
    local_real_root,
    resolved_addresses,
)
from models_registry.models import (
    ACTIVE_DEPLOYMENT_STATUSES,
    Deployment,
    DeploymentHost,
    DeploymentTarget,
    HostLock,
    ObservedHost,
    RegistryError,
)
from models_registry.services.durable_writes import db_write


class SameMachineRefused(RegistryError):
    """Two hosts (of one or two targets) are one machine and install root."""


# --------------------------------------------------------------------------- at creation


def refuse_same_machine_by_name(host: DeploymentHost) -> None:
    """Beyond the spelled identity: another host whose address resolves to an address of
    this one (or both to this machine), on the same port and root. A name that does not
    resolve now is left to the preflight check."""
    target = host.target
    if target.is_local:
        return
    port = host.port or target.ssh_port
    root = canonical_root(host.install_root or target.install_root)
    mine = resolved_addresses(host.hostname)
    if not mine:
        return
    others = DeploymentHost.objects.exclude(pk=host.pk).select_related("target")
    for other in others.filter(target__is_local=False):
        other_port = other.port or other.target.ssh_port
        other_root = canonical_root(other.install_root or other.target.install_root)
        if other_port != port or other_root != root:
            continue
        if mine & resolved_addresses(other.hostname):
            raise SameMachineRefused(
                f"host {host.hostname}:{port} resolves to the same machine as "
                f"{other.hostname}:{other_port} of target {other.target.name} "
                f"({other.target.environment}), same install root {root}; a host serves one "
                "target."
            )


def refuse_local_root_taken(target: DeploymentTarget) -> None:
    """A local target with no host rows runs in its install root on this machine: another
    local target, or a host on this machine, in that real folder is the same place."""
    if not target.is_local or (target.pk and target.hosts.exists()):
        return
    root = local_real_root(target.install_root)
    others = DeploymentTarget.objects.filter(is_local=True).exclude(pk=target.pk)
    for other in others:
        if other.hosts.exists():
            continue
        if local_real_root(other.install_root) == root:
            raise SameMachineRefused(
                f"local target {target.name} and local target {other.name} "
                f"({other.environment}) use one folder on this machine ({root}); "
                "a host serves one target."
            )
    taken = DeploymentHost.objects.filter(identity=f"{LOOPBACK}:local:{root}").first()
    if taken is not None:
        raise SameMachineRefused(
            f"local target {target.name} uses {root}, which host {taken} of target "
            f"{taken.target.name} already serves; a host serves one target."
        )


# --------------------------------------------------------------------------- at each deploy


def host_claim(deployment: Deployment, identities: Mapping[str, HostIdentity]) -> str:
    """The runner's ``claim_hosts`` for ``deployment``: refuse, or lock and record."""
    try:
        return db_write(lambda: _claim(deployment, identities), what="claim hosts")
    except SameMachineRefused as refused:
        raise HostClaimRefused(str(refused)) from refused


def _claim(deployment: Deployment, identities: Mapping[str, HostIdentity]) -> str:
    target = DeploymentTarget.objects.get(pk=deployment.target_id)
    hosts = {str(host): host for host in target.hosts.filter(enabled=True)}
    with transaction.atomic():
        for label, identity in sorted(identities.items()):
            _refuse_owned_elsewhere(target, label, hosts.get(label), identity)
        for label, identity in sorted(identities.items()):
            for key in identity.lock_keys():
                _lock(key, deployment, label, identity)
        for label, identity in identities.items():
            ObservedHost.objects.update_or_create(
                target=target,
                label=label,
                defaults={
                    "deployment_host": hosts.get(label),
                    "fingerprint": identity.fingerprint,
                    "real_root": identity.real_root,
                    "host_id": identity.host_id,
                    "root_key": identity.root_key,
                },
            )
    return f"{len(identities)} host(s) are this target's and locked for deployment #{deployment.pk}"


def _refuse_owned_elsewhere(
    target: DeploymentTarget, label: str, host: DeploymentHost | None, identity: HostIdentity
) -> None:
    same_place = Q(fingerprint=identity.fingerprint, real_root=identity.real_root)
    if identity.host_id:
        same_place |= Q(host_id=identity.host_id)
    candidates = (
        ObservedHost.objects.filter(same_place)
        .exclude(target=target, label=label)
        .select_related("target", "deployment_host")
    )
    for other in candidates:
        if host is not None and other.deployment_host_id == host.pk:
            continue  # this very host, recorded under an earlier spelling
        if not _still_in_service(other):
            continue
        raise SameMachineRefused(
            f"host {label} of target {target.name} ({target.environment}) is the same machine "
            f"and install root as host {other.label} of target {other.target.name} "
            f"({other.target.environment}): {identity.describe()}; a host serves one target, "
            "refusing before anything is uploaded"
        )


def _still_in_service(observed: ObservedHost) -> bool:
    """Whether the other host is still one its target deploys to (a disabled or moved host
    gives its machine back)."""
    if observed.deployment_host is None:
        return observed.target.is_local and not observed.target.hosts.filter(enabled=True).exists()
    host = observed.deployment_host
    return host.enabled and host.target_id == observed.target_id


def _lock(key: str, deployment: Deployment, label: str, identity: HostIdentity) -> None:
    held = HostLock.objects.select_for_update().filter(key=key).first()
    if held is None:
        try:
            with transaction.atomic():
                HostLock.objects.create(key=key, deployment=deployment, label=label)
        except IntegrityError as exc:
            raise _busy(deployment, label, identity, None) from exc
        return
    if held.deployment_id == deployment.pk:
        return
    holder = Deployment.objects.select_related("target").get(pk=held.deployment_id)
    if holder.status in ACTIVE_DEPLOYMENT_STATUSES:
        raise _busy(deployment, label, identity, holder)
    held.deployment = deployment
    held.label = label
    held.save(update_fields=["deployment", "label", "acquired_at"])


def _busy(
    deployment: Deployment, label: str, identity: HostIdentity, holder: Deployment | None
) -> SameMachineRefused:
    by = (
        f"deployment #{holder.pk} to target {holder.target.name} ({holder.status})"
        if holder is not None
        else "another deployment that claimed it a moment ago"
    )
    target = deployment.target
    return SameMachineRefused(
        f"the machine behind {label} of target {target.name} ({target.environment}; "
        f"{identity.fingerprint}, root {identity.real_root}) is being deployed by {by}: one "
        "deploy per machine at a time; nothing was uploaded"
    )
