"""Celery tasks sent by name: the one place a service queues work.

Services never import a task module (an import-linter contract holds it): tasks import
services, so the other direction would close a loop. A task is looked up by its
registered name in the project's Celery app, so its declared queue, limits and eager
mode apply as if it were called directly; a process that has not loaded the tasks sends
the message by name all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The registered names (``@shared_task(name=...)`` in models_registry/tasks/).
RUN_VALIDATION = "models_registry.run_validation"
RUN_PAPER_TRADING = "models_registry.run_paper_trading"
RUN_DEPLOYMENT = "models_registry.run_deployment"
SEND_WEBHOOK = "models_registry.send_webhook"
TRAIN_MODEL = "models_registry.train_model"
CHECK_TARGET_HOSTS = "models_registry.check_target_hosts"
STOP_STAGING_ENGINE = "models_registry.stop_staging_engine"
COLLECT_FORWARD_RUNS = "models_registry.collect_forward_runs"

TASK_NAMES = (
    RUN_VALIDATION,
    RUN_PAPER_TRADING,
    RUN_DEPLOYMENT,
    SEND_WEBHOOK,
    TRAIN_MODEL,
    CHECK_TARGET_HOSTS,
    STOP_STAGING_ENGINE,
    COLLECT_FORWARD_RUNS,
)


def task_send(
    name: str,
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    task_id: str | None = None,
) -> Any:
    """Queue task ``name`` with ``args``; the broker's error, if any, reaches the caller."""
    from tradebot.celery import app

    task = app.tasks.get(name)
    if task is None:
        return app.send_task(name, args=tuple(args), kwargs=kwargs or {}, task_id=task_id)
    if task_id is None:
        return task.delay(*args, **(kwargs or {}))
    return task.apply_async(args=tuple(args), kwargs=kwargs or {}, task_id=task_id)
