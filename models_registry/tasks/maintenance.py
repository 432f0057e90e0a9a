"""Housekeeping on each worker's own machine: stale temporary folders."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from models_registry.services.temp_sweep import sweep_stale_temp_folders
from tradebot.queues import TRAINING, queue_options


@shared_task(name="models_registry.sweep_temp_folders", **queue_options(TRAINING))
def sweep_temp_folders() -> list[str]:
    """On the training queue: the folders are on the training machines. Idempotent."""
    return [str(path) for path in sweep_stale_temp_folders()]


@worker_ready.connect
def sweep_at_worker_start(**_: Any) -> None:
    """A worker that starts after a crash sweeps what the killed one left."""
    sweep_stale_temp_folders()
