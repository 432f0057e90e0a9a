"""The fold jobs of a walk-forward validation re-fitted per fold (#28).

Sent by name from ``models_registry.services.walk_forward`` as a chord: per fold a chain of
``walk_forward_train_fold`` (``training`` queue) then ``walk_forward_trade_fold``
(``backtest`` queue), and ``walk_forward_join`` as the chord's body. A fold task returns its
error rather than raising, so the join always runs and names every failed fold. Each task is
idempotent: a redelivered fold retrains into the same folder, and the join of a run that is
no longer running does nothing.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from models_registry.services import walk_forward
from tradebot.queues import BACKTEST, TRAINING, queue_options


@shared_task(name=walk_forward.TRAIN_FOLD_TASK, **queue_options(TRAINING))
def walk_forward_train_fold(run_id: int, fold: dict[str, Any]) -> dict[str, Any]:
    return walk_forward.fold_train(run_id, fold)


@shared_task(name=walk_forward.TRADE_FOLD_TASK, **queue_options(BACKTEST))
def walk_forward_trade_fold(trained: dict[str, Any], run_id: int) -> dict[str, Any]:
    return walk_forward.fold_trade(trained, run_id)


@shared_task(name=walk_forward.JOIN_TASK, **queue_options(BACKTEST))
def walk_forward_join(results: list[dict[str, Any]], run_id: int) -> dict[str, Any]:
    run = walk_forward.walk_forward_join(results, run_id)
    return {"run": run.pk, "status": run.status, "passed": run.passed, "error": run.error}


@shared_task(name=walk_forward.CHORD_FAILED_TASK, **queue_options(BACKTEST))
def walk_forward_chord_failed(*args: Any, run_id: int) -> None:
    """Errback of the chord's body: Celery passes (request, exc, traceback) or a task id."""
    reason = next((repr(arg) for arg in args if isinstance(arg, BaseException)), None)
    walk_forward.walk_forward_chord_failed(run_id, reason or "the chord of its folds failed")


@shared_task(name=walk_forward.REPRODUCE_TASK, **queue_options(TRAINING))
def walk_forward_reproduce(run_id: int, last_fold: dict[str, Any]) -> dict[str, Any]:
    """Beside the folds: does the version's file come from its recorded configuration?"""
    return walk_forward.fold_reproduce(run_id, last_fold)
