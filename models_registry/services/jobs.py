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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from models_registry.events import EventType
from models_registry.models import (
    FINISHED_RUN_STATUSES,
    Deployment,
    PaperTradingRun,
    RegistryError,
    RunStatus,
    ValidationRun,
)
from models_registry.services import notifications
from models_registry.transitions import (
    DEPLOYMENT_STATUS,
    PAPER_RUN_STATUS,
    VALIDATION_RUN_STATUS,
    machine_for,
    transition,
)
from models_registry.transitions import (
    JobTransitionRefused as JobTransitionRefused,  # re-exported: callers catch jobs.<it>
)
from tradebot.queues import BACKTEST, QUEUE_LIMITS, TRAINING

logger = logging.getLogger(__name__)

Job = ValidationRun | PaperTradingRun | Deployment
# A job function hands back the kind of row it was given.
JobT = TypeVar("JobT", bound=Job)

# Every allowed move, per kind of job, read from the declared tables (models_registry.
# transitions). A status missing on the left is terminal.
ALLOWED: dict[type, dict[str, frozenset[str]]] = {
    ValidationRun: VALIDATION_RUN_STATUS.allowed(),
    PaperTradingRun: PAPER_RUN_STATUS.allowed(),
    Deployment: DEPLOYMENT_STATUS.allowed(),
}


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
    """Move ``job`` to ``to`` with one audit event; returns the locked, updated row.

    The move (source, ``to``, ``event_type``) must be a row of the job's table.
    """
    locked = transition(
        machine=machine_for(type(job)),
        row=job,
        to=to,
        event=event_type,
        actor=actor if actor is not None else getattr(job, "requested_by", None),
        fields=fields,
        data=data,
        on_commit=_deployer_notice(job, to),
    )
    job.status = to
    return locked


def _deployer_notice(job: Job, to: str) -> list[Callable[[], Any]]:
    if isinstance(job, Deployment) and to in notifications.DEPLOYER_NOTICE_STATUSES:
        return [lambda: notifications.notify_deployers(job.pk)]
    return []


def _locked(model: type[JobT], pk: int) -> JobT:
    # The manager of type[JobT] returns JobT; mypy only sees the bound's union of managers.
    return cast(JobT, model.objects.select_for_update().get(pk=pk))


@dataclass(frozen=True)
class Claim(Generic[JobT]):
    """What a delivered task may do with its row."""

    job: JobT | None
    redelivered: bool = False
    reason: str = ""


class ClaimRefused(RegistryError):
    """Raised by a claim's ``check``: the job must not start; it ends as ``to`` instead."""

    def __init__(
        self, reason: str, *, to: str, event_type: str, fields: dict[str, Any] | None = None
    ) -> None:
        super().__init__(reason)
        self.to, self.event_type, self.fields = to, event_type, fields or {}


def job_claim(
    *,
    model: type[JobT],
    pk: int,
    task_id: str,
    event_type: str,
    check: Callable[[JobT], dict[str, Any]] | None = None,
) -> Claim[JobT]:
    """Claim a queued row for the task it was created with.

    Same task id on a running row: this task's own message, redelivered after its
    worker died (acks_late): the caller resumes idempotently. A different task id:
    refused, whatever the status. An inline caller passes the id it stored (or none).
    ``check`` runs on the locked row before it starts: it returns fields to write with
    the claim, or raises ``ClaimRefused`` to end the row instead (one audited move).
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
        try:
            extra = check(locked) if check is not None else {}
        except ClaimRefused as refused:
            job_transition(
                job=locked,
                to=refused.to,
                event_type=refused.event_type,
                data={"task_id": task_id or owner, "reason": str(refused)},
                fields=refused.fields,
            )
            return Claim(None, reason=str(refused))
        claimed = job_transition(
            job=locked,
            to="running",
            event_type=event_type,
            # What the check added (e.g. the version a deploy replaces) is on record too.
            data={
                "task_id": task_id or owner,
                **{k: getattr(v, "pk", v) for k, v in extra.items()},
            },
            fields={"started_at": timezone.now(), "task_id": task_id or owner, **extra},
        )
    return Claim(claimed)


def run_fail(
    *, run: ValidationRun | PaperTradingRun, error: str, event_type: str = ""
) -> ValidationRun | PaperTradingRun:
    """A run that could not produce figures (bad data, a broken model, a lost worker):
    recorded as an error, the version's state kept."""
    default_event = (
        EventType.VALIDATION_RUN_ERROR
        if isinstance(run, ValidationRun)
        else EventType.PAPER_RUN_ERROR
    )
    with transaction.atomic():
        locked = type(run).objects.select_for_update().get(pk=run.pk)
        if locked.status in FINISHED_RUN_STATUSES:
            return locked
        return job_transition(
            job=locked,
            to=RunStatus.ERROR,
            event_type=event_type or default_event,
            fields={"passed": False, "error": error[:5000], "finished_at": timezone.now()},
            data={"error": error[:500]},
        )


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
        if model is PaperTradingRun:
            # A forward run's worker is the staging engine, for days: the collector
            # (services.forward) watches it and ends it; no worker lease applies.
            stuck_running = stuck_running.exclude(mode=PaperTradingRun.MODE_FORWARD)
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


# Where a validation run fanned out into re-fitted folds keeps its plan (services/walk_forward).
WALK_FORWARD_CONFIG_KEY = "walk_forward_refit"


def walk_forward_lease(folds: int) -> timedelta:
    """How long a refit run may stay running: every job of its chord one after the other on
    one worker: each fold's training and trading, the reproduction re-fit, the join."""
    training, backtest = QUEUE_LIMITS[TRAINING].hard_seconds, QUEUE_LIMITS[BACKTEST].hard_seconds
    return timedelta(seconds=folds * (training + backtest) + training + backtest + 60)


def _past_walk_forward_lease(runs: Any, now: datetime) -> list[Any]:
    """A run fanned out into re-fitted folds runs longer: its lease counts its folds (#28)."""
    past = []
    for run in runs:
        plan = (run.config or {}).get(WALK_FORWARD_CONFIG_KEY)
        if isinstance(plan, dict):
            started = run.started_at or run.created_at
            if started > now - walk_forward_lease(len(plan.get("folds") or [])):
                continue  # its folds may still be running
        past.append(run)
    return past


def _reconciled_event(run: Job) -> str:
    if isinstance(run, ValidationRun):
        return EventType.VALIDATION_RUN_RECONCILED
    return EventType.PAPER_RUN_RECONCILED
