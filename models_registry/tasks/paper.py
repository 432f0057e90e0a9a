"""Replay pre-checks on the ``backtest`` queue (backtest-like work), and the collection of
forward paper runs from the staging hosts.

``run_paper_trading`` claims its run first: a message redelivered after the run finished
(or while another delivery is running it) does nothing. ``runs.paper_run_request`` queues it.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from models_registry.models import PaperTradingRun
from models_registry.services.forward import forward_runs_collect, staging_engine_stop
from models_registry.services.paper import paper_execute
from models_registry.services.runs import run_claim
from tradebot.queues import BACKTEST, DEFAULT, DEPLOY, queue_options


@shared_task(bind=True, name="models_registry.run_paper_trading", **queue_options(BACKTEST))
def run_paper_trading(self: Task, run_id: int) -> dict[str, Any]:
    run = PaperTradingRun.objects.select_related("model_version").get(pk=run_id)
    claim = run_claim(run, task_id=self.request.id or "")
    if claim.job is None:
        return {"run": run_id, "skipped": claim.reason}
    # A redelivery of this task's own message (its worker died) runs it again: the
    # computation is deterministic and recording a finished run is idempotent.
    run = claim.job
    # paper_execute records every failure on the run itself (an unexpected one is re-raised).
    finished = paper_execute(run)
    return {
        "run": finished.pk,
        "status": finished.status,
        "passed": finished.passed,
        "version_state": finished.model_version.state,
        "error": finished.error,
    }


@shared_task(name="models_registry.collect_forward_runs", **queue_options(DEFAULT))
def collect_forward_runs() -> dict[str, Any]:
    """Beat, every minute: read each forward run's journal from its staging hosts, record
    its progress, judge it once its period is covered. Idempotent: the journal is the
    record, so a second delivery (or a restarted worker) counts the same bars again."""
    return {"collected": forward_runs_collect()}


@shared_task(name="models_registry.stop_staging_engine", **queue_options(DEPLOY))
def stop_staging_engine(run_id: int, reason: str) -> dict[str, Any]:
    """Stop the engine of a forward run's staging target (replaced, rejected, failed)."""
    return {"run": run_id, "hosts": staging_engine_stop(run_id, reason)}
