"""The one way a validation run, paper run or deployment changes status.

``job_transition`` locks the row, checks the source status against ``ALLOWED``,
writes the new status (through the database gate, see ``models_registry.guards``)
and exactly one audit event, in the caller's transaction; a caller that also moves
the version does it in that same transaction. ``job_claim`` is the worker's side:
a task claims the row it was created with (the task id is generated with the row,
before anything is queued), recognises a redelivery of its own message, and
refuses another task's row. ``jobs_reconcile`` (beat) ends the jobs stuck past
their lease: queued with no worker taking them, or running on a worker that died.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from models_registry.guards import transition_write
from models_registry.models import (
    Deployment,
    DeploymentStatus,
    PaperTradingRun,
    RegistryError,
    RunStatus,
    ValidationRun,
)
from models_registry.services.audit import audit_event_record
from tradebot.queues import BACKTEST, QUEUE_LIMITS

logger = logging.getLogger(__name__)

Job = ValidationRun | PaperTradingRun | Deployment
# A job function hands back the kind of row it was given.
JobT = TypeVar("JobT", bound=Job)

_RUN_MOVES: dict[str, frozenset[str]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.ERROR}),
    RunStatus.RUNNING: frozenset({RunStatus.PASSED, RunStatus.FAILED, RunStatus.ERROR}),
}
_DEPLOYMENT_MOVES: dict[str, frozenset[str]] = {
    DeploymentStatus.SCHEDULED: frozenset({DeploymentStatus.QUEUED, DeploymentStatus.CANCELLED}),
    DeploymentStatus.QUEUED: frozenset(
        {DeploymentStatus.RUNNING, DeploymentStatus.FAILED, DeploymentStatus.CANCELLED}
    ),
    DeploymentStatus.RUNNING: frozenset(
        {
            DeploymentStatus.SUCCEEDED,
            DeploymentStatus.FAILED,
            DeploymentStatus.ROLLED_BACK,
            DeploymentStatus.NEEDS_ATTENTION,
        }
    ),
    # 14b's rollback phase, if it gets its own status, ends here as well.
    "rolling_back": frozenset({DeploymentStatus.ROLLED_BACK, DeploymentStatus.NEEDS_ATTENTION}),
}
# Every allowed move, per kind of job. A status missing on the left is terminal.
ALLOWED: dict[type, dict[str, frozenset[str]]] = {
    ValidationRun: _RUN_MOVES,
    PaperTradingRun: _RUN_MOVES,
    Deployment: _DEPLOYMENT_MOVES,
}


class JobTransitionRefused(RegistryError):
    """The job is not in a status from which this change is allowed."""


def new_task_id() -> str:
    """The Celery task id, generated with the row so the row always names its task."""
    return str(uuid.uuid4())


def is_finished(job: Job) -> bool:
    return job.status not in ALLOWED[type(job)]


def job_transition(
    *,
    job: JobT,
    to: str,
    event_type: str,
    actor: User | None = None,
    data: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
) -> JobT:
    """Move ``job`` to ``to`` with one audit event; returns the locked, updated row."""
    model = type(job)
    with transaction.atomic():
        locked = _locked(model, job.pk)
        source = locked.status
        if to not in ALLOWED[model].get(source, frozenset()):
            raise JobTransitionRefused(
                f"{model.__name__} #{locked.pk} is {source}; it cannot become {to}."
            )
        locked.status = to
        for name, value in (fields or {}).items():
            setattr(locked, name, value)
        with transition_write(event_type):
            locked.save(update_fields=["status", *(fields or {}).keys()])
        event = audit_event_record(
            event_type=event_type,
            actor=actor if actor is not None else getattr(locked, "requested_by", None),
            obj=locked,
            data={"old_status": source, "new_status": to, **(data or {})},
        )
        _after_commit(locked, event.pk)
    job.status = to
    return locked


def _locked(model: type[JobT], pk: int) -> JobT:
    # The manager of type[JobT] returns JobT; mypy only sees the bound's union of managers.
    return cast(JobT, model.objects.select_for_update().get(pk=pk))


def _after_commit(job: Job, event_id: int) -> None:
    from models_registry.services import notifications

    transaction.on_commit(lambda: notifications.webhook_queue(event_id), robust=True)
    if isinstance(job, Deployment) and job.status in notifications.DEPLOYER_NOTICE_STATUSES:
        transaction.on_commit(lambda: notifications.notify_deployers(job.pk), robust=True)


@dataclass(frozen=True)
class Claim(Generic[JobT]):
    """What a delivered task may do with its row."""

    job: JobT | None
    redelivered: bool = False
    reason: str = ""


def job_claim(*, model: type[JobT], pk: int, task_id: str, event_type: str) -> Claim[JobT]:
    """Claim a queued row for the task it was created with.

    Same task id on a running row: this task's own message, redelivered after its
    worker died (acks_late): the caller resumes idempotently. A different task id:
    refused, whatever the status. An inline caller passes the id it stored (or none).
    """
    with transaction.atomic():
        locked = _locked(model, pk)
        owner = locked.task_id
        if owner and task_id and owner != task_id:
            return Claim(None, reason=f"belongs to task {owner}, not {task_id}")
        if locked.status == "running" and owner and owner == task_id:
            return Claim(locked, redelivered=True)
        if locked.status != "queued":
            return Claim(None, reason=f"not queued (status {locked.status})")
        claimed = job_transition(
            job=locked,
            to="running",
            event_type=event_type,
            data={"task_id": task_id or owner},
            fields={"started_at": timezone.now(), "task_id": task_id or owner},
        )
    return Claim(claimed)


# --- leases and reconcile --------------------------------------------------------------


def queued_lease() -> timedelta:
    """A queued job no worker took in this long is taken to have no task (broker down)."""
    return timedelta(seconds=getattr(settings, "TRADEBOT_QUEUED_LEASE_SECONDS", 30 * 60))


def running_lease(model: type) -> timedelta:
    """A run still running past its queue's hard time limit has lost its worker."""
    default = QUEUE_LIMITS[BACKTEST].hard_seconds + 60
    return timedelta(seconds=getattr(settings, "TRADEBOT_RUN_LEASE_SECONDS", default))


def runs_reconcile(
    *,
    now: datetime | None = None,
    queued_after: timedelta | None = None,
    running_after: timedelta | None = None,
) -> list[Job]:
    """End every run stuck past its lease as an error, with an audit event saying why.

    A run is not requeued: it is cheap to request again, and a second copy of a
    message that did reach the broker would run it twice.
    """
    from models_registry.services.runs import run_fail

    now = now or timezone.now()
    queued_cutoff = now - (queued_after if queued_after is not None else queued_lease())
    ended: list[Job] = []
    for model in (ValidationRun, PaperTradingRun):
        lease = running_after if running_after is not None else running_lease(model)
        running_cutoff = now - lease
        stuck_queued = model.objects.filter(status=RunStatus.QUEUED, created_at__lte=queued_cutoff)
        stuck_running: Any = model.objects.filter(
            Q(started_at__lte=running_cutoff)
            | Q(started_at__isnull=True, created_at__lte=running_cutoff),
            status=RunStatus.RUNNING,
        )
        if model is ValidationRun and running_after is None:
            stuck_running = _past_walk_forward_lease(stuck_running, now)
        for run in stuck_queued:
            ended.append(
                run_fail(
                    run=run,
                    error="reconciled: no worker took this run within its lease "
                    "(task lost or broker down); request it again",
                    event_type=_reconciled_event(run),
                )
            )
        for run in stuck_running:
            ended.append(
                run_fail(
                    run=run,
                    error="reconciled: its worker died while running it "
                    f"(task {run.task_id or '?'}); nothing was recorded, request it again",
                    event_type=_reconciled_event(run),
                )
            )
    return ended


def _past_walk_forward_lease(runs: Any, now: datetime) -> list[Any]:
    """A run fanned out into re-fitted folds runs longer: its lease counts its folds (#28)."""
    from models_registry.services.walk_forward import CONFIG_KEY, walk_forward_lease

    past = []
    for run in runs:
        plan = (run.config or {}).get(CONFIG_KEY)
        if isinstance(plan, dict):
            started = run.started_at or run.created_at
            if started > now - walk_forward_lease(len(plan.get("folds") or [])):
                continue  # its folds may still be running
        past.append(run)
    return past


def _reconciled_event(run: Job) -> str:
    return f"{'validation' if isinstance(run, ValidationRun) else 'paper'}_run_reconciled"
