"""Validation backtests on the ``backtest`` queue.

``run_validation`` claims its run first: a message redelivered after the run finished
(or while another delivery is running it) does nothing. The admin's "Validate" action
queues it through ``runs.validation_run_request``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task

from deployment import crash_points
from models_registry.models import ValidationRun
from models_registry.services.runs import run_claim, run_fail
from models_registry.services.validation import validation_execute
from models_registry.services.walk_forward import walk_forward_validation_start
from tradebot.queues import BACKTEST, queue_options

logger = logging.getLogger(__name__)


@shared_task(bind=True, name="models_registry.run_validation", **queue_options(BACKTEST))
def run_validation(self: Task, run_id: int) -> dict[str, Any]:
    run = ValidationRun.objects.select_related("model_version").get(pk=run_id)
    claim = run_claim(run, task_id=self.request.id or "")
    if claim.job is None:
        return {"run": run_id, "skipped": claim.reason}
    # A redelivery of this task's own message (its worker died) runs it again: the
    # computation is deterministic and recording a finished run is idempotent.
    run = claim.job
    crash_points.reached("validation_claimed")  # test-only: kill -9 here when armed
    try:
        # A policy run under a policy with refit folds fans out into fold jobs; their
        # chord's join records it (models_registry/services/walk_forward.py).
        if walk_forward_validation_start(run):
            return {"run": run_id, "walk_forward": True}
        finished = validation_execute(run)
    except Exception as exc:
        # A bug, not bad input: the run must not stay 'running' for ever.
        logger.exception("validation run %s crashed", run_id)
        run_fail(run=run, error=f"unexpected error: {type(exc).__name__}: {exc}")
        raise
    crash_points.reached("validation_committed")
    return {
        "run": finished.pk,
        "status": finished.status,
        "passed": finished.passed,
        "version_state": finished.model_version.state,
        "error": finished.error,
    }
