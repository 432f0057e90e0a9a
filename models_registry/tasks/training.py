"""Training on a Celery worker (the ``training`` queue), with progress the admin can show.

Idempotent on the task id: the id is the version's origin key, so a message
redelivered after a worker died (acks_late) returns the version the first
delivery made instead of training a second one. A run killed half way leaves
no version: registration is the last step, in one transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from engine.training.config import EpochCallback
from models_registry.services.training import (
    TrainingRefused,
    refuse_training_in_production,
    training_run,
)
from tradebot.queues import TRAINING, queue_options

logger = logging.getLogger(__name__)

PROGRESS = "PROGRESS"


@shared_task(bind=True, name="models_registry.train_model", **queue_options(TRAINING))
def train_model_task(
    self: Task, symbol: str, options: dict[str, Any], user_id: int | None
) -> dict[str, Any]:
    """Train ``symbol`` with ``options`` (as for the train_model command) and register it."""
    refuse_training_in_production()
    version = training_run(
        symbol=symbol,
        options=options,
        requested_by=_user(user_id),
        origin_key=self.request.id,
        **_progress_reporters(self, options),
    )
    logger.info("training task %s: %s", self.request.id, version)
    return {"model_version_id": version.pk, "name": version.name, "version": version.version}


def _user(user_id: int | None) -> User | None:
    if user_id is None:
        return None
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise TrainingRefused(f"no user with id {user_id} to record as who started training")
    return user


def _progress_reporter(task: Task) -> EpochCallback:
    return _progress_reporters(task, {})["on_epoch"]


def _progress_reporters(task: Task, options: dict[str, Any]) -> dict[str, Any]:
    """PROGRESS meta per epoch; with a search, also which trial of how many is running."""
    n_trials = options.get("search")
    trial = {"number": 0}

    def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
        meta: dict[str, Any] = {
            "epoch": epoch,
            "total": total,
            "loss": logs.get("loss"),
            "val_loss": logs.get("val_loss"),
        }
        if n_trials:
            meta.update(trial=trial["number"] + 1, n_trials=n_trials)
        task.update_state(state=PROGRESS, meta=meta)

    def on_trial(number: int, total: int, record: dict[str, Any]) -> None:
        trial["number"] = number + 1  # the next trial starts
        task.update_state(
            state=PROGRESS,
            meta={
                "epoch": None, "total": None, "loss": None, "val_loss": None,
                "trial": number + 1, "n_trials": total, "trial_state": record["state"],
            },
        )  # fmt: skip

    return {"on_epoch": on_epoch, "on_trial": on_trial} if n_trials else {"on_epoch": on_epoch}
