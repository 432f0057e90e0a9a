"""The Celery queues and their time limits, in one place.

Long jobs (training, backtests, deployments) get their own queues so a slow
training run never delays a deployment, and each queue has explicit soft and
hard limits. Tasks declare their queue with ``**queue_options(QUEUE)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT = "default"
TRAINING = "training"
BACKTEST = "backtest"
DEPLOY = "deploy"


@dataclass(frozen=True)
class QueueLimits:
    soft_seconds: int
    hard_seconds: int


QUEUE_LIMITS: dict[str, QueueLimits] = {
    DEFAULT: QueueLimits(soft_seconds=5 * 60, hard_seconds=6 * 60),
    TRAINING: QueueLimits(soft_seconds=60 * 60, hard_seconds=65 * 60),
    BACKTEST: QueueLimits(soft_seconds=20 * 60, hard_seconds=25 * 60),
    DEPLOY: QueueLimits(soft_seconds=15 * 60, hard_seconds=20 * 60),
}
LONG_QUEUES = (TRAINING, BACKTEST, DEPLOY)


def queue_options(queue: str) -> dict[str, Any]:
    """Task decorator options that route a task to ``queue`` with that queue's limits."""
    limits = QUEUE_LIMITS[queue]
    options: dict[str, Any] = {
        # Read by route_by_declared_queue: Celery 6 drops the task-level `queue` attribute.
        "declared_queue": queue,
        "soft_time_limit": limits.soft_seconds,
        "time_limit": limits.hard_seconds,
    }
    if queue in LONG_QUEUES:
        # Acknowledge after the work, so a worker killed mid-job lets the job be
        # redelivered; the tasks on these queues are written to be idempotent.
        options["acks_late"] = True
        options["reject_on_worker_lost"] = True
    return options


def broker_visibility_timeout() -> int:
    """Seconds Redis waits for an ack before redelivering a message.

    With acks_late, Redis redelivers a message that is not acknowledged within
    the visibility timeout, even if a worker is still busy with it. It must
    therefore outlast the longest hard time limit, or a long training run would
    be started a second time while the first is still going.
    """
    return max(limits.hard_seconds for limits in QUEUE_LIMITS.values()) + 15 * 60


def route_by_declared_queue(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any
) -> dict[str, str] | None:
    """Celery router: send each task to the queue it declared with queue_options()."""
    queue = getattr(task, "declared_queue", None)
    return {"queue": queue} if queue else None
