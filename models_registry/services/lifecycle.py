"""One concern: every state change of a model version, each one guarded service.

Every state change of a model version, each one guarded service.

A transition runs in one transaction: lock the row, check the source state and
the gate, write the new state and exactly one audit event, and queue side
effects (e-mail) on commit. A refused transition changes nothing and is itself
recorded as an audit event when a user asked for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from models_registry import selectors, signals
from models_registry.events import EventType
from models_registry.gates import gates_for
from models_registry.models import (
    Approval,
    Deployment,
    DeploymentStatus,
    Environment,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RegistryError,
    RunStatus,
    ValidationRun,
)
from models_registry.services import notifications
from models_registry.services.audit import audit_event_record
from models_registry.services.jobs import WALK_FORWARD_CONFIG_KEY
from models_registry.services.provenance import ProvenanceMissing, refuse_approval_without_creator
from models_registry.transitions import (
    VERSION_STATE,
    GateFailed,
    transition,
)
from models_registry.transitions import (  # re-exported: callers catch lifecycle.<it>
    TransitionRefused as TransitionRefused,
)

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", ValidationRun, PaperTradingRun, Deployment)

PRE_PRODUCTION_STATES = (
    ModelState.TRAINED,
    ModelState.VALIDATED,
    ModelState.STAGED,
    ModelState.PAPER_TESTED,
    ModelState.APPROVED,
)


class FourEyesViolation(RegistryError):
    """The same person may not train or request a version and also approve it."""


def audited_refusal(
    refusal_event: str, actor_kw: str
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Record a refused attempt in the audit trail, outside the rolled-back transaction."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except RegistryError as exc:
                actor = kwargs.get(actor_kw)
                version = kwargs.get("model_version")
                if actor is not None and getattr(actor, "is_authenticated", False):
                    audit_event_record(
                        event_type=refusal_event,
                        actor=actor,  # type: ignore[arg-type]
                        obj=version if isinstance(version, ModelVersion) else None,
                        data={"reason": str(exc), "error": type(exc).__name__},
                    )
                raise

        return wrapper

    return decorate


def _transition(
    *,
    model_version: ModelVersion,
    target: str,
    actor: User | None,
    event_type: str,
    gate: Callable[[ModelVersion], dict[str, Any]] | None = None,
    extra_fields: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    sources: Iterable[str] | None = None,
) -> ModelVersion:
    """A move of the version's state: a row of ``transitions.VERSION_STATE``.

    ``sources`` is accepted for callers written before the table and not consulted: the
    table alone says where each move starts.
    """
    del sources
    locked = transition(
        machine=VERSION_STATE,
        row=model_version,
        to=target,
        event=event_type,
        actor=actor,
        gate=gate,
        fields=extra_fields,
        data=data,
    )
    model_version.refresh_from_db()
    return locked


# --- gates -----------------------------------------------------------------


def _refuse_short_history(version: ModelVersion) -> None:
    if version.allow_short_history:
        raise GateFailed(
            f"{version} was trained with --allow-short-history (less than six months of data); "
            "such a version can never pass a gate."
        )


# The evidence reads are shared with pages and commands: models_registry.selectors.
passing_validation_run = selectors.passing_validation_run
successful_staging_deployment = selectors.successful_staging_deployment


def _stored(model: type[M], obj: M, what: str) -> M:
    """The row as the database holds it now: a gate never trusts an object in memory.

    A caller could pass an unsaved or edited instance (``status=PASSED`` set in
    memory); only what is on record counts as evidence.
    """
    if obj is None or obj.pk is None:
        raise GateFailed(f"the {what} offered as evidence is not on record.")
    try:
        return model.objects.get(pk=obj.pk)
    except model.DoesNotExist as exc:
        raise GateFailed(f"{what} #{obj.pk} does not exist.") from exc


def _validation_gate(offered: ValidationRun) -> Callable[[ModelVersion], dict[str, Any]]:
    def gate(version: ModelVersion) -> dict[str, Any]:
        _refuse_short_history(version)
        run = _stored(ValidationRun, offered, "validation run")
        if run.model_version_id != version.pk:
            raise GateFailed(f"validation run #{run.pk} belongs to another version.")
        if run.in_sample:
            raise GateFailed(f"validation run #{run.pk} overlaps the training data (in-sample).")
        if run.kind != ValidationRun.KIND_BACKTEST:
            raise GateFailed(
                f"validation run #{run.pk} is a {run.kind} run, not a validation backtest."
            )
        if not (run.status == RunStatus.PASSED and run.passed):
            failed = [g.get("name") for g in run.gate_results if not g.get("passed")]
            raise GateFailed(
                f"validation run #{run.pk} did not pass: {', '.join(failed) or run.status}."
            )
        oos = version.out_of_sample_from
        if _refit_evidence(run):
            _refuse_refit_evidence_in_sample(run, oos)
        elif oos and run.window_start and run.window_start < oos:
            raise GateFailed(
                f"validation run #{run.pk} starts {run.window_start:%Y-%m-%d %H:%M}, "
                f"before the out-of-sample period ({oos:%Y-%m-%d %H:%M})."
            )
        return {"validation_run": run.pk}

    return gate


def _refit_evidence(run: ValidationRun) -> bool:
    return bool(((run.config or {}).get(WALK_FORWARD_CONFIG_KEY) or {}).get("folds"))


def _refuse_refit_evidence_in_sample(run: ValidationRun, oos: datetime | None) -> None:
    """Re-fitted fold evidence starts before the version's own unseen bars by design: what
    must hold is that each fold's model never touched a bar of its fold (purged and
    embargoed), as recorded by the fold's training, and that the last fold reaches into the
    version's own out-of-sample period (docs/backtest.md)."""
    folds = run.config[WALK_FORWARD_CONFIG_KEY]["folds"]
    for fold in folds:
        name = f"fold {fold.get('number')} of {fold.get('of')}"
        last_seen = parse_datetime(str((fold.get("model") or {}).get("data_end") or ""))
        start = parse_datetime(str(fold.get("start") or ""))
        if last_seen is None or start is None:
            raise GateFailed(f"validation run #{run.pk}: {name} records no training end.")
        if last_seen >= start:
            raise GateFailed(
                f"validation run #{run.pk}: {name}'s model was trained on bars up to "
                f"{last_seen:%Y-%m-%d %H:%M}, inside its fold (from {start:%Y-%m-%d %H:%M})."
            )
    stop = parse_datetime(str(folds[-1].get("stop") or ""))
    if oos and (stop is None or stop <= oos):
        raise GateFailed(
            f"validation run #{run.pk}: its folds end before the version's out-of-sample "
            f"period ({oos:%Y-%m-%d %H:%M})."
        )


def _forward_gate(offered: PaperTradingRun) -> Callable[[ModelVersion], dict[str, Any]]:
    """staged -> paper_tested: the engine paper traded forward on the staging target.

    A replay of stored bars is a pre-check, never this evidence: only a forward run of
    this exact file, on a staging target, for the policy's period counts."""

    def gate(version: ModelVersion) -> dict[str, Any]:
        _refuse_short_history(version)
        run = _stored(PaperTradingRun, offered, "forward paper run")
        if run.model_version_id != version.pk:
            raise GateFailed(f"paper run #{run.pk} belongs to another version.")
        if run.mode != PaperTradingRun.MODE_FORWARD:
            raise GateFailed(
                f"paper run #{run.pk} is a replay of stored bars, not forward paper trading "
                "on the staging target."
            )
        if run.target is None or run.target.environment != Environment.STAGING:
            raise GateFailed(f"paper run #{run.pk} did not run on a staging target.")
        if (run.config or {}).get("model_sha256") != version.onnx_sha256:
            raise GateFailed(f"paper run #{run.pk} ran a different file (sha256).")
        if not (run.status == RunStatus.PASSED and run.passed):
            failed = [g.get("name") for g in run.gate_results if not g.get("passed")]
            raise GateFailed(
                f"paper run #{run.pk} did not pass: {', '.join(failed) or run.status}."
            )
        min_bars = int(gates_for(version.name, "paper")["min_bars"])
        if run.bars < min_bars:
            raise GateFailed(
                f"paper run #{run.pk} covered {run.bars} bars; {version.name} needs "
                f"at least {min_bars} (gate paper.min_bars)."
            )
        return {"paper_run": run.pk, "paper_bars": run.bars}

    return gate


def _staging_gate(offered: Deployment) -> Callable[[ModelVersion], dict[str, Any]]:
    def gate(version: ModelVersion) -> dict[str, Any]:
        deployment = _stored(Deployment, offered, "staging deployment")
        if deployment.model_version_id != version.pk:
            raise GateFailed(f"deployment #{deployment.pk} is of another version.")
        if deployment.target.environment != Environment.STAGING:
            raise GateFailed(
                f"deployment #{deployment.pk} went to {deployment.target}, not staging."
            )
        if deployment.status != DeploymentStatus.SUCCEEDED:
            raise GateFailed(f"deployment #{deployment.pk} did not succeed ({deployment.status}).")
        if not (deployment.compatibility or {}).get("passed"):
            raise GateFailed(
                f"the compatibility check of deployment #{deployment.pk} did not pass."
            )
        if deployment.sha256 != version.onnx_sha256:
            raise GateFailed(f"deployment #{deployment.pk} shipped a different file (sha256).")
        replay = selectors.passing_replay_run(version)
        if replay is None:
            raise GateFailed(f"{version} has no passing replay pre-check.")
        return {"staging_deployment": deployment.pk, "replay_run": replay.pk}

    return gate


def _approval_gate(approver: User) -> Callable[[ModelVersion], dict[str, Any]]:
    def gate(version: ModelVersion) -> dict[str, Any]:
        _refuse_short_history(version)
        if not approver.has_perm("models_registry.approve_modelversion"):
            raise GateFailed(f"{approver.get_username()} does not hold the approver role.")
        # No recorded creator: four eyes cannot be checked, so staging and production
        # refuse (it was skipped before, and the registrant approved their own model).
        try:
            refuse_approval_without_creator(version)
        except ProvenanceMissing as exc:
            raise FourEyesViolation(str(exc)) from exc
        if version.created_by_id is not None and version.created_by_id == approver.pk:
            raise FourEyesViolation(
                f"{approver.get_username()} trained or registered {version}: "
                "another person must approve."
            )
        if (
            version.approval_requested_by_id is not None
            and version.approval_requested_by_id == approver.pk
        ):
            raise FourEyesViolation(
                f"{approver.get_username()} requested the approval of {version}: "
                "another person must approve."
            )
        missing = [
            what
            for what, present in (
                ("a passing out-of-sample validation run", passing_validation_run(version)),
                ("a passing replay pre-check", selectors.passing_replay_run(version)),
                ("a successful staging deployment", successful_staging_deployment(version)),
                (
                    "a passing forward paper run on staging",
                    selectors.passing_forward_run(version),
                ),
            )
            if present is None
        ]
        if missing:
            raise GateFailed(f"{version} lacks {', '.join(missing)}.")
        return {}

    return gate


# --- transitions -------------------------------------------------------------


@audited_refusal(EventType.MODEL_VERSION_VALIDATE_REFUSED, "actor")
def model_version_validate(
    *, model_version: ModelVersion, validation_run: ValidationRun, actor: User | None
) -> ModelVersion:
    with transaction.atomic():
        return _transition(
            model_version=model_version,
            target=ModelState.VALIDATED,
            actor=actor,
            event_type="model_version_validated",
            gate=_validation_gate(validation_run),
        )


@audited_refusal(EventType.MODEL_VERSION_STAGE_REFUSED, "actor")
def model_version_stage(
    *, model_version: ModelVersion, deployment: Deployment, actor: User | None
) -> ModelVersion:
    """Staging passed after a passing replay: the forward paper run starts there."""
    with transaction.atomic():
        return _transition(
            model_version=model_version,
            target=ModelState.STAGED,
            actor=actor,
            event_type="model_version_staged",
            gate=_staging_gate(deployment),
        )


@audited_refusal(EventType.MODEL_VERSION_MARK_PAPER_TESTED_REFUSED, "actor")
def model_version_mark_paper_tested(
    *, model_version: ModelVersion, paper_run: PaperTradingRun, actor: User | None
) -> ModelVersion:
    """The forward run on staging passed: the version now awaits approval.

    The approval is requested by whoever staged it (the forward run's deployment)."""
    deployment = paper_run.deployment
    requester = (deployment.requested_by if deployment is not None else None) or actor
    with transaction.atomic():
        tested = _transition(
            model_version=model_version,
            target=ModelState.PAPER_TESTED,
            actor=actor,
            event_type="model_version_paper_tested",
            gate=_forward_gate(paper_run),
            extra_fields={
                "approval_requested_by": requester,
                "approval_requested_at": timezone.now(),
            },
        )
        transaction.on_commit(
            lambda: signals.approval_requested.send(ModelVersion, model_version_id=tested.pk),
            robust=True,
        )
    return tested


@audited_refusal(EventType.MODEL_VERSION_APPROVE_REFUSED, "approved_by")
def model_version_approve(
    *, model_version: ModelVersion, approved_by: User, comment: str
) -> Approval:
    if not comment or not comment.strip():
        raise GateFailed("An approval needs a comment saying what was checked.")
    with transaction.atomic():
        approved = _transition(
            model_version=model_version,
            target=ModelState.APPROVED,
            actor=approved_by,
            event_type="model_version_approved",
            gate=_approval_gate(approved_by),
            data={"comment": comment},
        )
        approval = Approval.objects.create(
            model_version=approved,
            decision=Approval.DECISION_APPROVED,
            decided_by=approved_by,
            comment=comment.strip(),
            sha256=approved.onnx_sha256,
            requested_by_id=approved.approval_requested_by_id,
        )
        transaction.on_commit(
            lambda: signals.approval_decided.send(Approval, approval_id=approval.pk), robust=True
        )
    return approval


def needs_new_approval(version: ModelVersion) -> bool:
    """Approved or live, with its latest approval suspended: a new decision is due."""
    if version.state not in (ModelState.APPROVED, ModelState.IN_PRODUCTION):
        return False
    latest = version.approvals.order_by("-decided_at", "-id").first()
    return (
        latest is not None
        and latest.decision == Approval.DECISION_APPROVED
        and latest.suspensions.exists()
    )


@audited_refusal(EventType.MODEL_VERSION_REAPPROVE_REFUSED, "approved_by")
def model_version_reapprove(
    *, model_version: ModelVersion, approved_by: User, comment: str
) -> Approval:
    """A new approval for a version whose approval was suspended; its state does not change.

    The same four-eyes and evidence gate as the first approval; the version's row is locked,
    and the decision and its audit event are written in one transaction.
    """
    if not comment or not comment.strip():
        raise GateFailed("An approval needs a comment saying what was checked.")
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if not needs_new_approval(locked):
            raise TransitionRefused(
                f"{locked} is {locked.get_state_display().lower()} and no suspended approval "
                "waits for a new decision."
            )
        suspended = locked.approvals.order_by("-decided_at", "-id").first()
        gate_data = _approval_gate(approved_by)(locked)
        approval = Approval.objects.create(
            model_version=locked,
            decision=Approval.DECISION_APPROVED,
            decided_by=approved_by,
            comment=comment.strip(),
            sha256=locked.onnx_sha256,
            requested_by_id=locked.approval_requested_by_id,
        )
        event = audit_event_record(
            event_type=EventType.MODEL_VERSION_REAPPROVED,
            actor=approved_by,
            obj=locked,
            data={
                "state": locked.state,
                "comment": comment.strip(),
                "approval": approval.pk,
                "replaces_suspended_approval": suspended.pk if suspended else None,
                **gate_data,
            },
        )
        transaction.on_commit(lambda: notifications.webhook_queue(event.pk), robust=True)
        transaction.on_commit(
            lambda: signals.approval_decided.send(Approval, approval_id=approval.pk), robust=True
        )
    model_version.refresh_from_db()
    return approval


@audited_refusal(EventType.MODEL_VERSION_REJECT_REFUSED, "rejected_by")
def model_version_reject(
    *, model_version: ModelVersion, rejected_by: User, comment: str
) -> Approval:
    if not comment or not comment.strip():
        raise GateFailed("A rejection needs a reason.")
    if not rejected_by.has_perm("models_registry.reject_modelversion"):
        raise GateFailed(f"{rejected_by.get_username()} does not hold the approver role.")
    with transaction.atomic():
        rejected = _transition(
            model_version=model_version,
            target=ModelState.REJECTED,
            actor=rejected_by,
            event_type="model_version_rejected",
            data={"comment": comment},
        )
        decision = Approval.objects.create(
            model_version=rejected,
            decision=Approval.DECISION_REJECTED,
            decided_by=rejected_by,
            comment=comment.strip(),
            sha256=rejected.onnx_sha256,
            requested_by_id=rejected.approval_requested_by_id,
        )
        transaction.on_commit(
            lambda: signals.approval_decided.send(Approval, approval_id=decision.pk), robust=True
        )
    return decision


current_approval = selectors.current_approval


def require_deployable_approval(version: ModelVersion) -> Approval:
    approval = current_approval(version)
    if approval is None:
        latest = version.approvals.order_by("-decided_at", "-id").first()
        if latest is not None and latest.suspensions.exists():
            raise GateFailed(f"the approval of {version} is suspended: it needs a new approval.")
        raise GateFailed(f"{version} has no approval in force for its file (sha256).")
    return approval


@audited_refusal(EventType.MODEL_VERSION_MARK_IN_PRODUCTION_REFUSED, "actor")
def model_version_mark_in_production(
    *, model_version: ModelVersion, deployment: Deployment, actor: User | None
) -> ModelVersion:
    """A production deployment succeeded: this version is live, the one it replaced retires."""

    def gate(version: ModelVersion) -> dict[str, Any]:
        done = _stored(Deployment, deployment, "production deployment")
        if done.model_version_id != version.pk:
            raise GateFailed(f"deployment #{done.pk} is of another version.")
        if done.target.environment != Environment.PRODUCTION:
            raise GateFailed(f"deployment #{done.pk} went to {done.target}, not production.")
        if done.status != DeploymentStatus.SUCCEEDED:
            raise GateFailed(f"deployment #{done.pk} did not succeed ({done.status}).")
        approval = require_deployable_approval(version)
        if done.sha256 != approval.sha256:
            raise GateFailed("the deployed file's sha256 is not the approved one.")
        return {"approval": approval.pk, "deployment": done.pk}

    with transaction.atomic():
        # Lock both rows up front, in id order: the audit event written by the
        # first transition holds the chain lock until commit, so taking a row
        # lock after it could deadlock with a transition of the other version.
        previous_id = deployment.previous_version_id
        ids = sorted({model_version.pk, *([previous_id] if previous_id else [])})
        list(ModelVersion.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
        live = _transition(
            model_version=model_version,
            target=ModelState.IN_PRODUCTION,
            actor=actor,
            event_type="model_version_in_production",
            gate=gate,
            data={"target": deployment.target.name},
        )
        previous = ModelVersion.objects.filter(pk=previous_id).first() if previous_id else None
        if (
            previous is not None
            and previous.pk != live.pk
            # Already out of production (e.g. retired by another target's deploy):
            # the files are live now, so the registry must record it, not refuse.
            and previous.state == ModelState.IN_PRODUCTION
            and not _live_elsewhere(previous, deployment)
        ):
            _transition(
                model_version=previous,
                target=ModelState.RETIRED,
                actor=actor,
                event_type="model_version_retired",
                data={"replaced_by": live.pk, "target": deployment.target.name},
            )
    return live


def _live_elsewhere(version: ModelVersion, deployment: Deployment) -> bool:
    """Whether ``version`` still runs on another production target than this deployment's."""
    return selectors.live_on_other_production_target(version, deployment)
