"""Every status field's graph, declared once, and the one function that moves along it.

A ``Machine`` is one status column: the states a row may be born in and the moves it may
make, each move a row of (source, target, event type, permission). ``transition`` is the
only writer of those columns: it locks the row, checks that the move is a row of the
table (and the actor's permission, and the caller's gate), writes the new value through
the database gate (``models_registry.guards``) and exactly one audit event, in one
transaction. ``manage.py state_machines`` draws the tables into docs/state-machines.md.

Lock order (docs/jobs.md): object rows first (model versions in id order, then the job
row), the audit chain's lock last; ``transition`` takes the chain lock only when it
writes its event, after every row lock the caller took.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import models, transaction

from models_registry.events import EventType
from models_registry.guards import transition_write
from models_registry.models import (
    Deployment,
    DeploymentStatus,
    HealthStatus,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RegistryError,
    RunStatus,
    TargetChange,
    ValidationRun,
)
from models_registry.services import notifications
from models_registry.services.audit import audit_event_record

RowT = TypeVar("RowT", bound=models.Model)


class TransitionRefused(RegistryError):
    """The row is not in a status from which this move is declared."""


class JobTransitionRefused(TransitionRefused):
    """A run or deployment is not in a status from which this change is allowed."""


class GateFailed(RegistryError):
    """The gate for this transition is not met; the message says which part."""


@dataclass(frozen=True)
class Move:
    """One row of a status table: ``sources`` -> ``target``, recorded as ``event``."""

    sources: tuple[str, ...]
    target: str
    event: EventType
    # A permission the actor must hold (None: a system move, or checked by the gate).
    permission: str = ""
    role: str = ""  # how the refusal names the permission ("the approver role")


@dataclass(frozen=True)
class Machine:
    """One status column: where its rows are born and the moves they may make."""

    name: str
    model: type[models.Model]
    field: str
    initial: tuple[str, ...]
    moves: tuple[Move, ...]
    refusal: type[TransitionRefused] = TransitionRefused
    # The refusal's wording: (row, source, target, event) -> one line.
    describe: Callable[[Any, str, str, str], str] = lambda row, source, target, _event: (
        f"{type(row).__name__} #{row.pk} is {source}; it cannot become {target}."
    )

    @property
    def statuses(self) -> tuple[str, ...]:
        """Every value the column may hold: the birth states, then each move's ends."""
        seen: dict[str, None] = dict.fromkeys(self.initial)
        for move in self.moves:
            seen.update(dict.fromkeys(move.sources))
            seen[move.target] = None
        return tuple(seen)

    def allowed(self) -> dict[str, frozenset[str]]:
        """source -> the targets it may move to (a status missing on the left is terminal)."""
        table: dict[str, set[str]] = {}
        for move in self.moves:
            for source in move.sources:
                table.setdefault(source, set()).add(move.target)
        return {source: frozenset(targets) for source, targets in table.items()}

    def move(self, source: str, target: str, event: str) -> Move | None:
        for move in self.moves:
            if source in move.sources and move.target == target and move.event == event:
                return move
        return None

    def sources_of(self, target: str, event: str) -> tuple[str, ...]:
        return tuple(
            s for m in self.moves if m.target == target and m.event == event for s in m.sources
        )


def _version_refusal(row: Any, source: str, target: str, event: str) -> str:
    sources = VERSION_STATE.sources_of(target, event)
    return (
        f"{row} is {row.get_state_display().lower()}; "
        f"'{event}' needs it to be {' or '.join(sources) or 'something else'}."
    )


_PRE_PRODUCTION = (
    ModelState.TRAINED,
    ModelState.VALIDATED,
    ModelState.STAGED,
    ModelState.PAPER_TESTED,
    ModelState.APPROVED,
)

VERSION_STATE = Machine(
    name="Model version state",
    model=ModelVersion,
    field="state",
    initial=(ModelState.TRAINED,),
    moves=(
        Move((ModelState.TRAINED,), ModelState.VALIDATED, EventType.MODEL_VERSION_VALIDATED),
        # Staged after a passing replay pre-check; paper-tested by the forward run there.
        Move((ModelState.VALIDATED,), ModelState.STAGED, EventType.MODEL_VERSION_STAGED),
        Move((ModelState.STAGED,), ModelState.PAPER_TESTED, EventType.MODEL_VERSION_PAPER_TESTED),
        Move(
            (ModelState.PAPER_TESTED,),
            ModelState.APPROVED,
            EventType.MODEL_VERSION_APPROVED,
            permission="models_registry.approve_modelversion",
            role="the approver role",
        ),
        Move(
            _PRE_PRODUCTION,
            ModelState.REJECTED,
            EventType.MODEL_VERSION_REJECTED,
            permission="models_registry.reject_modelversion",
            role="the approver role",
        ),
        # Retired and in-production sources: a rollback, or a redeploy of what runs.
        Move(
            (ModelState.APPROVED, ModelState.RETIRED, ModelState.IN_PRODUCTION),
            ModelState.IN_PRODUCTION,
            EventType.MODEL_VERSION_IN_PRODUCTION,
        ),
        Move((ModelState.IN_PRODUCTION,), ModelState.RETIRED, EventType.MODEL_VERSION_RETIRED),
    ),
    describe=_version_refusal,
)

VERSION_HEALTH = Machine(
    name="Model version health",
    model=ModelVersion,
    field="health",
    initial=(HealthStatus.UNKNOWN,),
    moves=(
        Move((HealthStatus.UNKNOWN,), HealthStatus.HEALTHY, EventType.MODEL_VERSION_HEALTHY),
        # Degraded again while an approval is still in force: recorded again (it suspends it).
        Move(
            (
                HealthStatus.UNKNOWN,
                HealthStatus.HEALTHY,
                HealthStatus.RECOVERED,
                HealthStatus.DEGRADED,
            ),
            HealthStatus.DEGRADED,
            EventType.MODEL_VERSION_DEGRADED,
        ),
        Move((HealthStatus.DEGRADED,), HealthStatus.RECOVERED, EventType.MODEL_VERSION_RECOVERED),
    ),
)


def _run_machine(model: type[models.Model], name: str, kind: str) -> Machine:
    started, recorded, error, reconciled = (
        (
            EventType.VALIDATION_RUN_STARTED,
            EventType.VALIDATION_RUN_RECORDED,
            EventType.VALIDATION_RUN_ERROR,
            EventType.VALIDATION_RUN_RECONCILED,
        )
        if kind == "validation"
        else (
            EventType.PAPER_RUN_STARTED,
            EventType.PAPER_RUN_RECORDED,
            EventType.PAPER_RUN_ERROR,
            EventType.PAPER_RUN_RECONCILED,
        )
    )
    queued, running = (RunStatus.QUEUED,), (RunStatus.RUNNING,)
    either = (RunStatus.QUEUED, RunStatus.RUNNING)
    moves = [
        Move(queued, RunStatus.RUNNING, started),
        Move(running, RunStatus.PASSED, recorded),
        Move(running, RunStatus.FAILED, recorded),
        Move(either, RunStatus.ERROR, error),
        Move(either, RunStatus.ERROR, reconciled),
    ]
    if kind == "paper":
        # A forward run whose staging host lost market data or its journal: never a quiet
        # pass; it resumes when bars flow again, or ends in error (replaced, rejected).
        attention = (RunStatus.NEEDS_ATTENTION,)
        moves += [
            Move(running, RunStatus.NEEDS_ATTENTION, EventType.PAPER_RUN_NEEDS_ATTENTION),
            Move(attention, RunStatus.RUNNING, EventType.PAPER_RUN_RESUMED),
            Move(attention, RunStatus.ERROR, error),
        ]
    return Machine(
        name=name,
        model=model,
        field="status",
        initial=queued,
        moves=tuple(moves),
        refusal=JobTransitionRefused,
    )


VALIDATION_RUN_STATUS = _run_machine(ValidationRun, "Validation run status", "validation")
PAPER_RUN_STATUS = _run_machine(PaperTradingRun, "Paper trading run status", "paper")

_ENDED_BY_RUNNER = (
    DeploymentStatus.SUCCEEDED,
    DeploymentStatus.FAILED,
    DeploymentStatus.ROLLED_BACK,
    DeploymentStatus.NEEDS_ATTENTION,
)
# A rollback phase with its own status (14b), if it comes, ends here as well.
ROLLING_BACK = "rolling_back"


def _deployment_moves() -> tuple[Move, ...]:
    scheduled, queued = (DeploymentStatus.SCHEDULED,), (DeploymentStatus.QUEUED,)
    running = (DeploymentStatus.RUNNING,)
    moves = [
        Move(scheduled, DeploymentStatus.QUEUED, EventType.DEPLOYMENT_WINDOW_OPENED),
        Move(queued, DeploymentStatus.RUNNING, EventType.DEPLOYMENT_STARTED),
        # A deployer withdraws a deployment still waiting for its window (nothing left).
        Move(
            scheduled,
            DeploymentStatus.CANCELLED,
            EventType.DEPLOYMENT_CANCELLED,
            permission="models_registry.deploy_modelversion",
            role="the deployer role",
        ),
    ]
    for finished in (EventType.DEPLOY_FINISHED, EventType.ROLLBACK_FINISHED):
        # Queued and never started (broker refused, lease passed): failed, hosts untouched.
        moves.append(Move(queued, DeploymentStatus.FAILED, finished))
        moves += [Move(running, status, finished) for status in _ENDED_BY_RUNNER]
        moves += [
            Move((ROLLING_BACK,), status, finished)
            for status in (DeploymentStatus.ROLLED_BACK, DeploymentStatus.NEEDS_ATTENTION)
        ]
    # Claimed after its version's approval was suspended or withdrawn: nothing left.
    moves.append(Move(queued, DeploymentStatus.FAILED, EventType.DEPLOYMENT_APPROVAL_WITHDRAWN))
    return tuple(moves)


DEPLOYMENT_STATUS = Machine(
    name="Deployment status",
    model=Deployment,
    field="status",
    initial=(DeploymentStatus.QUEUED, DeploymentStatus.SCHEDULED),
    moves=_deployment_moves(),
    refusal=JobTransitionRefused,
)

TARGET_CHANGE_STATUS = Machine(
    name="Target change status",
    model=TargetChange,
    field="status",
    initial=(TargetChange.STATUS_PENDING,),
    moves=(
        Move(
            (TargetChange.STATUS_PENDING,),
            TargetChange.STATUS_APPLIED,
            EventType.DEPLOYMENT_TARGET_CHANGE_APPLIED,
            permission="models_registry.deploy_modelversion",
            role="the deployer role",
        ),
    ),
)

MACHINES: tuple[Machine, ...] = (
    VERSION_STATE,
    VERSION_HEALTH,
    VALIDATION_RUN_STATUS,
    PAPER_RUN_STATUS,
    DEPLOYMENT_STATUS,
    TARGET_CHANGE_STATUS,
)


def machine_for(model: type[models.Model], field_name: str = "status") -> Machine:
    for machine in MACHINES:
        if machine.model is model and machine.field == field_name:
            return machine
    raise LookupError(f"no status table for {model.__name__}.{field_name}")


def transition(
    *,
    machine: Machine,
    row: RowT,
    to: str,
    event: str,
    actor: User | None = None,
    gate: Callable[[RowT], Mapping[str, Any]] | None = None,
    fields: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    on_commit: Iterable[Callable[[], Any]] = (),
) -> RowT:
    """Move ``row`` along ``machine``: lock, check, write, one audit event; the locked row.

    Runs in the caller's transaction when there is one (its savepoint otherwise), so a
    caller that changes other rows too commits them with this move or not at all.
    """
    model = machine.model
    with transaction.atomic():
        locked: RowT = model._default_manager.select_for_update().get(pk=row.pk)  # type: ignore[assignment]
        source = str(getattr(locked, machine.field))
        move = machine.move(source, to, event)
        if move is None:
            raise machine.refusal(machine.describe(locked, source, to, event))
        if move.permission and (actor is None or not actor.has_perm(move.permission)):
            who = actor.get_username() if actor is not None else "nobody"
            raise GateFailed(f"{who} does not hold {move.role or move.permission}.")
        gate_data = dict(gate(locked)) if gate else {}
        setattr(locked, machine.field, to)
        for name, value in (fields or {}).items():
            setattr(locked, name, value)
        _save_through_gate(locked, machine, event, list(fields or {}))
        audit = audit_event_record(
            event_type=event,
            actor=actor,
            obj=locked,
            data={
                f"old_{machine.field}": source,
                f"new_{machine.field}": to,
                **gate_data,
                **(data or {}),
            },
        )
        transaction.on_commit(lambda: notifications.webhook_queue(audit.pk), robust=True)
        for callback in on_commit:
            transaction.on_commit(callback, robust=True)
    return locked


def _save_through_gate(row: models.Model, machine: Machine, event: str, extra: list[str]) -> None:
    """The one write of a status column: the Python and database guards open for it alone."""
    row._status_change_allowed = True  # type: ignore[attr-defined]
    row._state_change_allowed = True  # type: ignore[attr-defined]
    try:
        with transition_write(event):
            row.save(update_fields=[machine.field, *extra])
    finally:
        row._status_change_allowed = False  # type: ignore[attr-defined]
        row._state_change_allowed = False  # type: ignore[attr-defined]
