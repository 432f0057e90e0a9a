"""Paper trading runs on the ``backtest`` queue (a replay is backtest-like work).

``run_paper_trading`` claims its run first: a message redelivered after the run finished
(or while another delivery is running it) does nothing. ``runs.paper_run_request`` queues it.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from models_registry.models import PaperTradingRun
from models_registry.services.paper import paper_execute
from models_registry.services.runs import run_claim
from tradebot.queues import BACKTEST, queue_options


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
