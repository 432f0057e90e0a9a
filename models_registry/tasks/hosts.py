"""The admin's "Check hosts" button: read each host of a target and record it (audited)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.contrib.auth import get_user_model

from models_registry.models import DeploymentTarget
from models_registry.services.host_checks import target_host_check
from tradebot.queues import DEFAULT, queue_options


@shared_task(name="models_registry.check_target_hosts", **queue_options(DEFAULT))
def check_target_hosts(target_id: int, actor_id: int | None = None) -> dict[str, Any]:
    """Idempotent in effect: a second delivery records a second, equally true observation."""
    target = DeploymentTarget.objects.get(pk=target_id)
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    report, event = target_host_check(target=target, actor=actor, source="admin")
    return {"target": target.name, "consistent": report["consistent"], "event": event.pk}


@shared_task(name="models_registry.check_production_hosts", **queue_options(DEFAULT))
def check_production_hosts() -> list[dict[str, Any]]:
    """Beat: every production host's serving sha256 against the registry's; a mismatch
    (or a halted engine) flags the target and mails the deployers. Idempotent: a flag
    is raised once while open."""
    from models_registry.services.attention_checks import production_hosts_check

    return production_hosts_check()
