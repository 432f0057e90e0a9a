"""Scheduled monitoring tasks, fired by Celery beat (see ``models_registry.schedules``).

``revalidate_production`` and ``walk_forward_report`` are the names beat stores. They run on
the default queue and only fan out: one ``revalidate_version`` / ``walk_forward_version``
task per in-production version, on the ``backtest`` queue, because a backtest can outlive
the default queue's five-minute limit and must not hold up quick tasks. One slow or
broken version then delays nobody else, and each run links to its own task result.

Idempotent per slot: the slot (UTC date, or ISO week for the report) is fixed when beat
fires and passed on, so beat firing twice or a redelivered message finds the slot's
existing run instead of making a second one (a unique constraint settles a race).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import Task, shared_task
from django.utils.dateparse import parse_datetime

from models_registry.models import ModelState, ModelVersion
from models_registry.services import monitoring
from tradebot.queues import BACKTEST, DEFAULT, queue_options


def _when(now: str | None) -> datetime | None:
    """Beat sends no arguments (now); an operator or a test may pin the moment."""
    if now is None:
        return None
    parsed = parse_datetime(now)
    if parsed is None:
        raise ValueError(f"now must be an ISO date and time, got {now!r}")
    return parsed


def _production_ids() -> list[int]:
    return list(
        ModelVersion.objects.filter(state=ModelState.IN_PRODUCTION)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


@shared_task(name="models_registry.revalidate_production", **queue_options(DEFAULT))
def revalidate_production(now: str | None = None, slot: str | None = None) -> dict[str, Any]:
    slot = slot or monitoring.daily_slot(_when(now))
    queued = [
        {"model_version": pk, "task_id": revalidate_version.delay(pk, slot).id}
        for pk in _production_ids()
    ]
    return {"slot": slot, "queued": queued}


@shared_task(bind=True, name="models_registry.revalidate_version", **queue_options(BACKTEST))
def revalidate_version(self: Task, model_version_id: int, slot: str) -> dict[str, Any]:
    version = ModelVersion.objects.get(pk=model_version_id)
    result = monitoring.scheduled_validation(
        model_version=version, slot=slot, task_id=self.request.id or ""
    )
    return result.to_dict()


@shared_task(name="models_registry.walk_forward_report", **queue_options(DEFAULT))
def walk_forward_report(
    now: str | None = None, parts: int = monitoring.WALK_FORWARD_PARTS
) -> dict[str, Any]:
    slot = monitoring.weekly_slot(_when(now))
    queued = [
        {"model_version": pk, "task_id": walk_forward_version.delay(pk, slot, parts).id}
        for pk in _production_ids()
    ]
    return {"slot": slot, "queued": queued}


@shared_task(bind=True, name="models_registry.walk_forward_version", **queue_options(BACKTEST))
def walk_forward_version(
    self: Task, model_version_id: int, slot: str, parts: int
) -> dict[str, Any]:
    version = ModelVersion.objects.get(pk=model_version_id)
    result = monitoring.walk_forward_report(
        model_version=version, parts=parts, slot=slot, task_id=self.request.id or ""
    )
    return result.to_dict()
