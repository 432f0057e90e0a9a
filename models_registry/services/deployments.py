"""One concern: the registry's side of a deployment: request, claim, outcome, rollback.

Deployments, from the registry's side: whether a version may go to a target, and
what the outcome means for its lifecycle. How files reach hosts is `deployment/`'s job.

A request is refused (with the reason) or recorded as a ``Deployment`` that is
queued, or scheduled for the target's next deployment window. The database
holds one active deployment per target. The task claims the row, runs
`deployment.runner`, records every step (in the row and the audit trail) and
the outcome, then moves the version on through the lifecycle service.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from deployment import crash_points, runner
from deployment.identity import HostIdentity
from deployment.steps import costs_problem
from deployment.targets import ArtifactSpec, HostSpec, TargetConfigError, TargetSpec
from deployment.windows import WindowSpecError, next_window_start, window_allows
from models_registry import dispatch, selectors, signals
from models_registry.events import EventType
from models_registry.models import (
    FINISHED_DEPLOYMENT_STATUSES,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    Environment,
    ModelState,
    ModelVersion,
    RegistryError,
    TargetAttention,
)
from models_registry.policy import CostPolicy, policy_in_force
from models_registry.services import attention, host_identity, jobs, lifecycle
from models_registry.services.audit import anchor_text, audit_event_record
from models_registry.services.durable_writes import (
    DatabaseUnavailable,
    DeploymentJournal,
    db_write,
    journaled_deployment_ids,
)
from models_registry.services.model_versions import version_dir
from tradebot.queues import DEPLOY, QUEUE_LIMITS

logger = logging.getLogger(__name__)

FINISHED = FINISHED_DEPLOYMENT_STATUSES
# Per kind of deployment, the event of its request and of its end (see models_registry.events).
_REQUESTED_EVENT = {
    Deployment.KIND_DEPLOY: EventType.DEPLOY_REQUESTED,
    Deployment.KIND_ROLLBACK: EventType.ROLLBACK_REQUESTED,
}
_FINISHED_EVENT = {
    Deployment.KIND_DEPLOY: EventType.DEPLOY_FINISHED,
    Deployment.KIND_ROLLBACK: EventType.ROLLBACK_FINISHED,
}


class DeploymentRefused(RegistryError):
    """The registry will not send this version to this target now; the message says why."""


# --- reading ---------------------------------------------------------------------


# Reads shared with pages and commands live in models_registry.selectors; these names stay
# for the callers that know them here.
live_version_on_target = selectors.live_version_on_target
active_deployment = selectors.active_deployment


# --- specs for deployment/ ---------------------------------------------------------


def target_spec(target: DeploymentTarget) -> TargetSpec:
    hosts = [
        HostSpec(
            address=host.hostname,
            port=host.port,
            name=str(host),
            install_root=host.install_root or None,
            upload_dir=host.upload_dir or None,
        )
        for host in target.hosts.filter(enabled=True).order_by("id")
    ]
    if not hosts and target.is_local:
        hosts = [HostSpec(address="localhost", name="localhost")]
    try:
        return TargetSpec(
            name=target.name,
            hosts=tuple(hosts),
            environment=target.environment,  # type: ignore[arg-type]
            local=target.is_local,
            ssh_user=target.ssh_user,
            ssh_port=target.ssh_port,
            ssh_key_path=target.ssh_key_path or None,
            known_hosts_text=target.known_hosts or None,
            install_root=target.install_root,
            model_dir=target.model_dir,
            upload_dir=target.upload_dir,
            service=target.service_name,
            restart_command=target.restart_command,
            stop_command=target.stop_command,
            log_command=target.log_command,
            status_file=target.status_file or "{install_root}/var/status.json",
            check_command=target.check_command or None,
            health_timeout=float(target.health_timeout_seconds),
            command_timeout=float(target.command_timeout_seconds),
            keep_versions=target.keep_versions,
            parallelism=target.parallelism,
        )
    except TargetConfigError as exc:
        raise DeploymentRefused(str(exc)) from exc


def artifact_spec(version: ModelVersion) -> ArtifactSpec:
    """The files a deploy ships: the version's model and metadata, and the costs of the
    policy in force for its model name (``<name>_costs.json``, which the engine trades at)."""
    folder = version_dir(version)
    return ArtifactSpec(
        name=version.name,
        version=version.version,
        onnx_path=folder / version.onnx_file,
        metadata_path=folder / version.metadata_file,
        onnx_sha256=version.onnx_sha256,
        metadata_sha256=version.metadata_sha256,
        costs_json=policy_costs_json(version.name),
    )


def policy_costs_document(model_name: str) -> dict[str, Any]:
    """What a host is told of the policy costs (engine/live/config.py reads it)."""
    policy = policy_in_force(model_name)
    costs = CostPolicy.of(policy)
    return {
        "model_name": model_name,
        "fee_bps": costs.fee_bps,
        "slippage_bps": costs.slippage_bps,
        "policy_id": policy.pk,
        "policy_number": policy.number,
        "policy_label": policy.label,
        "policy_scope": policy.scope,
        "policy_hash": policy.content_hash,
    }


def policy_costs_json(model_name: str) -> str:
    return costs_file_text(policy_costs_document(model_name))


def costs_file_text(document: Mapping[str, Any]) -> str:
    """The bytes of ``<name>_costs.json``: ASCII JSON (any other character escaped), so it
    passes through a shell argument and the host's sha256 unchanged."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


# --- requests ----------------------------------------------------------------------


def deployment_request(
    *,
    model_version: ModelVersion,
    target: DeploymentTarget,
    requested_by: User,
    force_reason: str = "",
    schedule_if_closed: bool = False,
    enqueue: bool = True,
) -> Deployment:
    """Queue a deployment of ``model_version`` to ``target``, or say why not.

    ``enqueue=False`` records the queued row without sending a task: the caller
    runs it in its own process (`deploy_model --inline`), so no worker races it.
    """
    try:
        with transaction.atomic():
            version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
            approval = _check_deploy_allowed(version, target, requested_by)
            attention.refuse_while_attention_open(target)
            status, scheduled_for, forced = _window_decision(
                target, force_reason, schedule_if_closed
            )
            return _create_deployment(
                version=version,
                target=target,
                requested_by=requested_by,
                kind=Deployment.KIND_DEPLOY,
                approval=approval,
                status=status,
                scheduled_for=scheduled_for,
                forced_reason=forced,
                enqueue=enqueue,
            )
    except RegistryError as exc:
        _record_refusal("deployment_request_refused", requested_by, model_version, target, exc)
        raise


def _check_deploy_allowed(version: ModelVersion, target: DeploymentTarget, user: User) -> Any:
    if target.environment == Environment.STAGING:
        if not user.has_perm("models_registry.stage_modelversion"):
            raise DeploymentRefused(f"{user.get_username()} may not deploy to staging.")
        if version.state not in (ModelState.VALIDATED, ModelState.STAGED):
            raise DeploymentRefused(
                f"{version} is {version.get_state_display().lower()}; only a validated "
                "version with a passing replay pre-check goes to staging (or a staged one, "
                "to paper trade again)."
            )
        if selectors.passing_replay_run(version) is None:
            raise DeploymentRefused(
                f"{version} has no passing replay pre-check: replay it before staging."
            )
        return None
    if not user.has_perm("models_registry.deploy_modelversion"):
        raise DeploymentRefused(f"{user.get_username()} may not deploy to production.")
    if version.state not in (ModelState.APPROVED, ModelState.IN_PRODUCTION):
        raise DeploymentRefused(
            f"{version} is {version.get_state_display().lower()}; only an approved version "
            "goes to production."
        )
    approval = lifecycle.require_deployable_approval(version)
    if approval.sha256 != version.onnx_sha256:
        raise DeploymentRefused("the approved sha256 is not the artifact's sha256.")
    return approval


def _window_decision(
    target: DeploymentTarget, force_reason: str, schedule_if_closed: bool
) -> tuple[str, datetime | None, str]:
    """(status, scheduled_for, forced reason): the reason is kept only if it was needed,
    so the audit trail never shows a deploy "forced" into an open window."""
    now = timezone.now()
    try:
        open_now = window_allows(now, target.allowed_hours)
    except WindowSpecError as exc:
        raise DeploymentRefused(f"target {target.name}: {exc}") from exc
    if open_now:
        return DeploymentStatus.QUEUED, None, ""
    opens = next_window_start(now, target.allowed_hours)
    if force_reason.strip():
        return DeploymentStatus.QUEUED, None, force_reason.strip()
    if schedule_if_closed:
        return DeploymentStatus.SCHEDULED, opens, ""
    raise DeploymentRefused(
        f"target {target.name} accepts deploys only in its window ({target.allowed_hours} UTC); "
        f"the next opens {opens:%Y-%m-%d %H:%M} UTC. Schedule it, or force it with a reason."
    )


def _create_deployment(
    *,
    version: ModelVersion,
    target: DeploymentTarget,
    requested_by: User,
    kind: str,
    approval: Any,
    status: str,
    scheduled_for: datetime | None,
    forced_reason: str = "",
    previous: ModelVersion | None = None,
    enqueue: bool = True,
) -> Deployment:
    if status == DeploymentStatus.QUEUED:
        busy = active_deployment(target)
        if busy is not None:
            raise DeploymentRefused(
                f"target {target.name} is busy with deployment #{busy.pk} ({busy.model_version}, "
                f"{busy.status}); one deployment per target at a time."
            )
    try:
        with transaction.atomic():
            deployment = Deployment.objects.create(
                target=target,
                model_version=version,
                previous_version=previous
                if previous is not None
                else live_version_on_target(target),
                approval=approval,
                kind=kind,
                status=status,
                scheduled_for=scheduled_for,
                requested_by=requested_by,
                forced_reason=forced_reason,
                sha256=version.onnx_sha256,
                # The task id is the row's from the start (see services/jobs.py); an
                # inline run (enqueue=False) claims it under its own name instead.
                task_id=jobs.new_task_id() if enqueue else "",
            )
    except IntegrityError as exc:
        busy = active_deployment(target)
        raise DeploymentRefused(
            f"target {target.name} is busy with deployment #{busy.pk if busy else '?'}; "
            "one deployment per target at a time."
        ) from exc
    audit_event_record(
        event_type=_REQUESTED_EVENT[kind],
        actor=requested_by,
        obj=deployment,
        data={
            "target": target.name,
            "version": version.pk,
            "sha256": version.onnx_sha256,
            "status": status,
            "task_id": deployment.task_id,
            "scheduled_for": scheduled_for.isoformat() if scheduled_for else None,
            "forced_outside_window": forced_reason
            if forced_reason and kind == Deployment.KIND_DEPLOY
            else None,
            "comment": forced_reason if kind == Deployment.KIND_ROLLBACK else None,
        },
    )
    if status == DeploymentStatus.QUEUED and enqueue:
        transaction.on_commit(lambda: queue_deployment(deployment.pk))
    return deployment


def queue_deployment(deployment_id: int) -> None:
    """Send the task; if the broker refuses it, end the row instead of leaving it queued
    forever (a queued row with no task would hold the target's one active slot)."""
    deployment = Deployment.objects.select_related("target", "model_version").get(pk=deployment_id)
    if not deployment.task_id:  # a row made before task ids came with the row
        deployment.task_id = jobs.new_task_id()
        deployment.save(update_fields=["task_id"])
    try:
        dispatch.task_send(
            dispatch.RUN_DEPLOYMENT, args=(deployment_id,), task_id=deployment.task_id
        )
    except Exception as exc:  # the broker's errors vary by transport
        logger.exception("could not queue deployment %s", deployment_id)
        deployment_finish(
            deployment,
            status=DeploymentStatus.FAILED,
            reason=f"could not queue the deploy task ({type(exc).__name__}: {exc}); "
            "nothing was sent to the hosts",
        )


def rollback_request(
    *,
    target: DeploymentTarget,
    requested_by: User,
    comment: str,
    to_version_number: int | None = None,
    model_name: str | None = None,
    enqueue: bool = True,
) -> Deployment:
    """Go back to the version that ran before, or to one that ran on this target earlier."""
    try:
        if not requested_by.has_perm("models_registry.rollback_modelversion"):
            raise DeploymentRefused(f"{requested_by.get_username()} may not roll back.")
        if not comment.strip():
            raise DeploymentRefused("a rollback needs a comment saying why.")
        current = live_version_on_target(target)
        if current is None:
            raise DeploymentRefused(
                f"nothing has been deployed to {target.name}: nothing to roll back."
            )
        attention.refuse_while_attention_open(target)
        name = model_name or current.name
        to_version = _rollback_destination(target, current, name, to_version_number)
        approval = lifecycle.require_deployable_approval(to_version)
        with transaction.atomic():
            return _create_deployment(
                version=to_version,
                target=target,
                requested_by=requested_by,
                kind=Deployment.KIND_ROLLBACK,
                approval=approval,
                status=DeploymentStatus.QUEUED,
                scheduled_for=None,
                forced_reason=comment.strip(),
                previous=current,
                enqueue=enqueue,
            )
    except RegistryError as exc:
        _record_refusal("rollback_request_refused", requested_by, None, target, exc)
        raise


def _rollback_destination(
    target: DeploymentTarget, current: ModelVersion, name: str, number: int | None
) -> ModelVersion:
    ran_here = Deployment.objects.filter(
        target=target, status=DeploymentStatus.SUCCEEDED, model_version__name=name
    ).exclude(model_version=current)
    if number is not None:
        found = (
            ran_here.filter(model_version__version=number).select_related("model_version").first()
        )
        if found is None:
            raise DeploymentRefused(
                f"{name} v{number} never ran on {target.name}; cannot roll back to it."
            )
        return found.model_version
    last_success = (
        Deployment.objects.filter(
            target=target, status=DeploymentStatus.SUCCEEDED, model_version=current
        )
        .order_by("-finished_at")
        .first()
    )
    previous = last_success.previous_version if last_success else None
    if previous is None:
        raise DeploymentRefused(f"no version ran on {target.name} before {current}.")
    return previous


def deployment_cancel(*, deployment: Deployment, cancelled_by: User, reason: str) -> Deployment:
    """Cancel a deployment scheduled for its target's next window, before it starts.

    Only a scheduled deployment is cancelled: a queued one has its task sent already and a
    running one is on the hosts (wait for it, or roll back). The person must hold the role
    that could have requested it (stage for a staging target, deploy for production).
    """
    target = deployment.target
    try:
        needed = (
            "stage_modelversion"
            if target.environment == Environment.STAGING
            else "deploy_modelversion"
        )
        if not cancelled_by.has_perm(f"models_registry.{needed}"):
            raise DeploymentRefused(
                f"{cancelled_by.get_username()} may not cancel deployments to {target.name}."
            )
        if not reason.strip():
            raise DeploymentRefused("cancelling a deployment needs a reason.")
        with transaction.atomic():
            locked = Deployment.objects.select_for_update().get(pk=deployment.pk)
            if locked.status != DeploymentStatus.SCHEDULED:
                raise DeploymentRefused(
                    f"deployment #{locked.pk} is {locked.get_status_display().lower()}; only a "
                    "scheduled deployment can be cancelled."
                )
            return jobs.job_transition(
                job=locked,
                to=DeploymentStatus.CANCELLED,
                event_type="deployment_cancelled",
                actor=cancelled_by,
                data={"reason": reason.strip(), "target": target.name},
                fields={"finished_at": timezone.now()},
            )
    except RegistryError as exc:
        _record_refusal("deployment_cancel_refused", cancelled_by, None, target, exc)
        raise


def _record_refusal(
    event_type: str,
    user: User | None,
    version: ModelVersion | None,
    target: DeploymentTarget,
    exc: Exception,
) -> None:
    if user is None or not user.is_authenticated:
        return
    audit_event_record(
        event_type=event_type,
        actor=user,
        obj=version or target,
        data={"target": target.name, "reason": str(exc)},
    )


# --- execution (the Celery task calls these) ------------------------------------------


def deployment_claim(deployment_id: int, task_id: str = "") -> Deployment | None:
    """Move a queued deployment to running; None if it is not queued (a redelivery)."""
    claim = deployment_claim_for_task(deployment_id, task_id=task_id)
    return None if claim.redelivered else claim.job


def deployment_claim_for_task(deployment_id: int, *, task_id: str) -> jobs.Claim[Deployment]:
    """The worker's claim (see ``jobs.job_claim``); a redelivery is reported, not re-run.

    One transaction, rows in the registry's lock order (docs/jobs.md): the version first
    (a suspension of its approval takes that lock too, so the two are serial), then the
    deployment, then the audit chain. The approval is checked again here, before any
    file leaves: a deployment whose approval was suspended or withdrawn while it waited
    ends ``failed`` (hosts untouched) with one audited refusal and a notice to the
    deployers. The version it replaces is recorded with the claim, in the same move. A
    dropped database connection is retried on a fresh one.
    """
    return db_write(
        lambda: _claim_for_task_once(deployment_id, task_id=task_id), what="claim the deployment"
    )


def _claim_for_task_once(deployment_id: int, *, task_id: str) -> jobs.Claim[Deployment]:
    with transaction.atomic():
        version_id = (
            Deployment.objects.filter(pk=deployment_id)
            .values_list("model_version_id", flat=True)
            .get()
        )
        ModelVersion.objects.select_for_update().filter(pk=version_id).get()
        claim = jobs.job_claim(
            model=Deployment,
            pk=deployment_id,
            task_id=task_id,
            event_type=EventType.DEPLOYMENT_STARTED,
            check=_claim_check,
        )
    if claim.job is None or claim.redelivered:
        return claim
    return jobs.Claim(
        Deployment.objects.select_related("target", "model_version").get(pk=deployment_id)
    )


def _claim_check(deployment: Deployment) -> dict[str, Any]:
    """Under the claim's locks: refuse a withdrawn approval, else the fields to claim with."""
    withdrawn = approval_withdrawn(deployment)
    if withdrawn:
        raise jobs.ClaimRefused(
            f"deployment #{deployment.pk} stopped before any upload: {withdrawn}",
            to=DeploymentStatus.FAILED,
            event_type=EventType.DEPLOYMENT_APPROVAL_WITHDRAWN,
            fields={"finished_at": timezone.now(), "error": f"approval withdrawn: {withdrawn}"},
        )
    if deployment.kind != Deployment.KIND_DEPLOY:
        return {}
    # What runs there now, not what ran when it was requested: a scheduled deployment may
    # wait hours while others succeed, and the version it replaces is the one the
    # lifecycle must retire.
    return {"previous_version": live_version_on_target(deployment.target)}


def approval_withdrawn(deployment: Deployment) -> str:
    """Why ``deployment`` may no longer go to production ('' if its approval is in force).

    Staging needs no approval. Production (a deploy or a rollback) needs the version's
    approval in force, for the very file the deployment ships.
    """
    if deployment.target.environment != Environment.PRODUCTION:
        return ""
    version = deployment.model_version
    try:
        approval = lifecycle.require_deployable_approval(version)
    except RegistryError as exc:
        return str(exc)
    if approval.sha256 != deployment.sha256:
        return f"the approval in force for {version} covers another file (sha256)."
    return ""


def deployment_resume(deployment_id: int) -> Deployment:
    """The task's own message came back while the row is running: its worker died
    mid-deploy. A blind re-run could leave a host between two models, so the hosts'
    real state decides the outcome, as the reconcile beat would."""
    deployment = Deployment.objects.select_related(
        "target", "model_version", "previous_version"
    ).get(pk=deployment_id)
    return _reconcile_one(deployment)


def deployment_execute(
    deployment: Deployment, *, on_step: Callable[[dict[str, Any]], None] | None = None
) -> Deployment:
    """Run the steps on the hosts and record everything; never raises for a failed deploy.
    `on_step` sees each recorded step as it finishes (a command printing progress)."""
    recorder = _StepRecorder(deployment, on_step)

    def claim(identities: Mapping[str, HostIdentity]) -> str:
        return host_identity.host_claim(deployment, identities)

    try:
        spec = db_write(lambda: target_spec(deployment.target), what="read the target")
        anchor = db_write(anchor_text, what="read the audit chain head")
        artifact = db_write(
            lambda: artifact_spec(deployment.model_version), what="read the policy costs"
        )
        if deployment.kind == Deployment.KIND_ROLLBACK:
            outcome = runner.rollback(
                spec,
                name=deployment.model_version.name,
                deployment_id=f"d{deployment.pk}",
                on_step=recorder,
                to_artifact=artifact,
                audit_anchor=anchor,
                claim_hosts=claim,
            )
        else:
            outcome = runner.deploy(
                spec,
                artifact,
                f"d{deployment.pk}",
                recorder,
                audit_anchor=anchor,
                claim_hosts=claim,
            )
    except Exception as exc:  # a bug or a config error must still end the row honestly
        logger.exception("deployment %s crashed before the runner returned", deployment.pk)
        return deployment_finish(
            deployment, status=DeploymentStatus.FAILED, reason=f"{type(exc).__name__}: {exc}"
        )
    finished = deployment_finish(
        deployment,
        status=outcome.status,
        reason=outcome.reason,
        compatibility=outcome.compatibility,
        log_tail=outcome.log_tail,
        needs_attention=outcome.needs_attention,
    )
    if outcome.status == "succeeded" and artifact.costs_json is not None:
        shipped = artifact.costs_json
        problems = engine_costs_problems(outcome, shipped)
        if problems:
            with contextlib.suppress(DatabaseUnavailable):
                db_write(
                    lambda: engine_costs_flag(finished, problems, shipped),
                    what="flag the engine costs",
                )
    return finished


def engine_costs_problems(outcome: runner.DeploymentOutcome, costs_json: str) -> dict[str, str]:
    """Per host, why the engine its health check found does not trade at the shipped
    policy costs (empty when every engine does)."""
    shipped = json.loads(costs_json)
    statuses: dict[str, Any] = {}
    for record in outcome.steps:
        if record.step == "health_check" and record.ok:
            statuses[record.host] = (record.data or {}).get("status") or {}
    problems = {}
    for host in outcome.hosts:
        problem = costs_problem(shipped, (statuses.get(host) or {}).get("costs"))
        if problem is not None:
            problems[host] = problem
    return problems


def engine_costs_flag(
    deployment: Deployment, problems: Mapping[str, str], costs_json: str
) -> TargetAttention | None:
    """After a deploy that went out: engines not trading at the policy costs they were
    shipped (``costs_json``) raise a target attention flag (audited; deployers mailed)."""
    reason = "; ".join(f"{host}: {problem}" for host, problem in sorted(problems.items()))
    return attention.attention_raise_for_mismatch(
        target=deployment.target,
        reason=f"after deployment #{deployment.pk}: {reason}",
        report={"shipped_costs": json.loads(costs_json), "hosts": dict(problems)},
    )


class _StepRecorder:
    """Append each step to the deployment row and the audit trail as it finishes.

    Written ahead to the deployment's local journal, then to the database on a fresh
    connection if the last one dropped (services/durable_writes.py): a step is never
    lost, and one the database could not take is replayed from the journal."""

    def __init__(
        self, deployment: Deployment, on_step: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.deployment = deployment
        self.on_step = on_step
        self.journal = DeploymentJournal(deployment.pk)

    def __call__(self, record: runner.StepRecord) -> None:
        entry = record.to_dict()
        entry["name"] = entry.pop("step")
        entry["record_id"] = uuid.uuid4().hex
        self.journal.append({"kind": "step", "entry": entry})
        try:
            db_write(lambda: store_step(self.deployment, entry), what=f"record {entry['name']}")
        except DatabaseUnavailable:
            logger.exception(
                "deployment %s: step %s kept in %s only; reconcile replays it",
                self.deployment.pk,
                entry["name"],
                self.journal.path,
            )
        if self.on_step is not None:
            self.on_step(entry)


def store_step(deployment: Deployment, entry: dict[str, Any]) -> bool:
    """Append one step to the row and its audit event, in one transaction; False if this
    record is already there (a replay of the journal)."""
    with transaction.atomic():
        locked = Deployment.objects.select_for_update().get(pk=deployment.pk)
        steps = list(locked.steps or [])
        if entry.get("record_id") and any(
            step.get("record_id") == entry["record_id"] for step in steps
        ):
            return False
        steps.append(entry)
        Deployment.objects.filter(pk=locked.pk).update(steps=steps)
        audit_event_record(
            event_type="deployment_step",
            obj=locked,
            data={k: entry.get(k) for k in ("name", "host", "ok", "seconds", "detail")},
        )
    deployment.steps = steps
    return True


def deployment_journal_replay(deployment_id: int) -> Deployment | None:
    """Write what the deployment's journal holds and the database does not: its steps,
    then its outcome. Idempotent; the journal is removed once all of it is on record."""
    journal = DeploymentJournal(deployment_id)
    if not journal.exists():
        return None
    deployment = Deployment.objects.select_related("target", "model_version").get(pk=deployment_id)
    for entry in journal.steps():
        store_step(deployment, entry)
    finish = journal.finish()
    if finish is not None and deployment.status not in FINISHED:
        deployment = deployment_finish(
            deployment,
            status=finish["status"],
            reason=finish.get("reason", ""),
            compatibility=finish.get("compatibility") or {},
            log_tail=finish.get("log_tail", ""),
            needs_attention=bool(finish.get("needs_attention")),
        )
    deployment.refresh_from_db()
    if deployment.status in FINISHED:
        journal.remove()
    return deployment


def replay_journals() -> list[Deployment]:
    """Every journal left by a task that lost the database (reconcile runs this first)."""
    replayed = []
    for deployment_id in journaled_deployment_ids():
        try:
            done = deployment_journal_replay(deployment_id)
        except Deployment.DoesNotExist:
            logger.warning("journal for unknown deployment %s left in place", deployment_id)
            continue
        if done is not None:
            replayed.append(done)
    return replayed


def deployment_finish(
    deployment: Deployment,
    *,
    status: str,
    reason: str = "",
    compatibility: dict[str, Any] | None = None,
    log_tail: str = "",
    needs_attention: bool = False,
) -> Deployment:
    """Record the outcome and, in the same transaction, what it means for the version.

    A deployment flagged ``needs_attention`` (the hosts may not be serving a
    healthy model) ends as ``needs_attention``, never as a quiet ``rolled_back``.
    On a dropped connection the whole transaction runs again on a fresh one; if the
    database stays away the outcome waits in the deployment's journal for reconcile.
    """
    journal = DeploymentJournal(deployment.pk)
    outcome: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "compatibility": compatibility or {},
        "log_tail": log_tail,
        "needs_attention": needs_attention,
    }
    try:
        finished = db_write(
            lambda: _deployment_finish_once(deployment, **outcome), what="record the outcome"
        )
    except DatabaseUnavailable:
        # Only an outcome the database refused is replayed as such: one that a killed
        # worker never got to write is judged by reconcile from the hosts, past the lease.
        journal.append({"kind": "finish", **outcome})
        logger.exception(
            "deployment %s: outcome %s kept in %s only; reconcile records it",
            deployment.pk,
            status,
            journal.path,
        )
        return deployment
    if journal.exists():
        # Steps the database missed earlier are written now it is back; then the journal
        # has nothing the database lacks.
        with contextlib.suppress(DatabaseUnavailable):
            db_write(lambda: deployment_journal_replay(deployment.pk), what="replay the journal")
    return finished


def _deployment_finish_once(
    deployment: Deployment,
    *,
    status: str,
    reason: str,
    compatibility: dict[str, Any],
    log_tail: str,
    needs_attention: bool,
) -> Deployment:
    compatibility_report = _compatibility_summary(deployment, status, compatibility or {})
    if needs_attention and status in (DeploymentStatus.ROLLED_BACK, DeploymentStatus.FAILED):
        status = DeploymentStatus.NEEDS_ATTENTION
    with transaction.atomic():
        # Lock order (docs/jobs.md): the versions first, in id order (the lifecycle moves
        # them below), then the deployment; the audit chain's lock comes last, with the
        # first event. The reverse order deadlocked against a reject or a suspension.
        _lock_versions_of(deployment.pk)
        locked = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if locked.status in FINISHED:
            return locked
        if status == DeploymentStatus.SUCCEEDED and _goes_live(locked):
            try:
                with transaction.atomic():  # a savepoint: the go-live, or neither half
                    return _finish(
                        locked, status, reason, compatibility_report, log_tail, needs_attention
                    )
            except RegistryError as exc:
                # The files went out, but the version cannot go live (its approval was
                # suspended while it ran): never "succeeded" beside a version that did not
                # move. Needs attention, and the deployers are told (job_transition).
                status, needs_attention = DeploymentStatus.NEEDS_ATTENTION, True
                reason = (
                    f"the files went out but {locked.model_version} could not go live: {exc} "
                    "The hosts may serve a version without an approval in force: roll back "
                    "or approve it again."
                )
        return _finish(locked, status, reason, compatibility_report, log_tail, needs_attention)


def _lock_versions_of(deployment_id: int) -> None:
    ids = Deployment.objects.filter(pk=deployment_id).values_list(
        "model_version_id", "previous_version_id"
    )
    wanted = sorted({pk for pair in ids for pk in pair if pk is not None})
    list(ModelVersion.objects.select_for_update().filter(pk__in=wanted).order_by("pk"))


def _goes_live(deployment: Deployment) -> bool:
    return deployment.target.environment == Environment.PRODUCTION


def _finish(
    locked: Deployment,
    status: str,
    reason: str,
    compatibility_report: dict[str, Any],
    log_tail: str,
    needs_attention: bool,
) -> Deployment:
    locked = jobs.job_transition(
        job=locked,
        to=status,
        event_type=_FINISHED_EVENT[locked.kind],
        fields={
            "finished_at": timezone.now(),
            "error": ("NEEDS ATTENTION: " if needs_attention else "") + (reason or ""),
            "compatibility": compatibility_report,
            "log_tail": log_tail[-20_000:],
        },
        data={
            "status": status,
            "reason": reason,
            "target": locked.target.name,
            "sha256": locked.sha256,
            "needs_attention": needs_attention,
        },
    )
    if locked.status == DeploymentStatus.NEEDS_ATTENTION:
        attention.attention_raise_for_deployment(locked, reason=reason)
    # test-only (kill -9 when armed): the transaction dies with the worker
    crash_points.reached("deploy_finish_recorded")
    # Same transaction: a crash can no longer leave a finished deployment beside a
    # version whose state never moved.
    _advance_lifecycle(locked)
    return locked


def _compatibility_summary(
    deployment: Deployment, status: str, per_host: dict[str, Any]
) -> dict[str, Any]:
    if deployment.target.environment != Environment.STAGING:
        return {"hosts": per_host}
    ran = bool(per_host) and all(not r.get("skipped") for r in per_host.values())
    passed = (
        status == DeploymentStatus.SUCCEEDED
        and ran
        and all(r.get("exit_code") == 0 for r in per_host.values())
    )
    return {"passed": passed, "hosts": per_host, "ran": ran}


def _advance_lifecycle(deployment: Deployment) -> None:
    if deployment.status != DeploymentStatus.SUCCEEDED:
        return
    version = deployment.model_version
    if deployment.target.environment != Environment.STAGING:
        # A refusal propagates: deployment_finish then records the deployment as
        # needs_attention, never as succeeded beside a version that did not move.
        lifecycle.model_version_mark_in_production(
            model_version=version, deployment=deployment, actor=deployment.requested_by
        )
        return
    try:
        if version.state == ModelState.VALIDATED:
            lifecycle.model_version_stage(
                model_version=version, deployment=deployment, actor=deployment.requested_by
            )
    except RegistryError as exc:
        logger.warning(
            "deployment %s succeeded but %s did not move on: %s", deployment.pk, version, exc
        )
        return
    version.refresh_from_db()
    if version.state == ModelState.STAGED:
        # The engine now paper trades forward there (services.forward, via apps.ready).
        signals.staging_deployed.send(Deployment, deployment=deployment)


# --- scheduled deployments and reconciliation ------------------------------------------


def start_due_deployments(now: datetime | None = None) -> list[int]:
    """Queue scheduled deployments whose window has opened (beat runs this every minute)."""

    # A named closure, not functools.partial: on_commit callbacks are told apart by their
    # __qualname__ in tests and logs, and each must capture its own deployment's pk.
    def _queue_after_commit(pk: int) -> Callable[[], None]:
        return lambda: queue_deployment(pk)

    now = now or timezone.now()
    started = []
    for deployment in Deployment.objects.filter(
        status=DeploymentStatus.SCHEDULED, scheduled_for__lte=now
    ).select_related("target"):
        # The filter reads scheduled_for <= now, so it is set; the check tells the type checker.
        if active_deployment(deployment.target) is not None or deployment.scheduled_for is None:
            continue
        try:
            with transaction.atomic():
                jobs.job_transition(
                    job=deployment,
                    to=DeploymentStatus.QUEUED,
                    event_type="deployment_window_opened",
                    data={"scheduled_for": deployment.scheduled_for.isoformat()},
                )
                transaction.on_commit(_queue_after_commit(deployment.pk))
                started.append(deployment.pk)
        except (IntegrityError, jobs.JobTransitionRefused):
            continue
    return started


def stale_after() -> timedelta:
    """A running deployment older than the deploy queue's hard limit has lost its worker."""
    seconds = getattr(settings, "TRADEBOT_DEPLOY_STALE_SECONDS", None)
    return timedelta(
        seconds=seconds if seconds is not None else QUEUE_LIMITS[DEPLOY].hard_seconds + 60
    )


def reconcile_stale_deployments(*, older_than: timedelta | None = None) -> list[Deployment]:
    """Finish honestly the deployments a killed worker left running, from the hosts' real state."""
    now = timezone.now()
    cutoff = now - (older_than if older_than is not None else stale_after())
    # A task that lost the database kept its steps and outcome in its journal: recorded
    # now, without waiting for the lease, and never re-judged from the hosts.
    finished = [d for d in replay_journals() if d.status in FINISHED]
    finished += _fail_never_started(now - jobs.queued_lease())
    for deployment in Deployment.objects.filter(
        status=DeploymentStatus.RUNNING, started_at__lte=cutoff
    ).select_related("target", "model_version", "previous_version"):
        finished.append(_reconcile_one(deployment))
    return finished


def _fail_never_started(cutoff: datetime) -> list[Deployment]:
    """Queued deployments no worker took within the lease: nothing reached a host."""
    ended = []
    for deployment in Deployment.objects.filter(
        status=DeploymentStatus.QUEUED, created_at__lte=cutoff
    ).select_related("target", "model_version"):
        if deployment.scheduled_for and deployment.scheduled_for > cutoff:
            continue  # its window opened recently: its lease runs from then
        ended.append(
            deployment_finish(
                deployment,
                status=DeploymentStatus.FAILED,
                reason="reconciled: no worker took this deployment within its lease "
                "(task lost or broker down); nothing was sent to the hosts",
            )
        )
    return ended


def _reconcile_one(deployment: Deployment) -> Deployment:
    recorder = _StepRecorder(deployment)
    try:
        outcome = runner.reconcile(
            target_spec(deployment.target),
            name=deployment.model_version.name,
            deployment_id=f"d{deployment.pk}",
            expected_new_sha=deployment.sha256,
            previous_sha=previous_sha_on_hosts(deployment),
            on_step=recorder,
            swapped_on=swapped_hosts(deployment),
            audit_anchor=anchor_text(),
        )
    except Exception as exc:
        logger.exception("reconciling deployment %s failed", deployment.pk)
        return deployment_finish(
            deployment,
            status=DeploymentStatus.FAILED,
            reason=f"reconcile failed: {type(exc).__name__}: {exc}",
            needs_attention=True,
        )
    return deployment_finish(
        deployment,
        status=outcome.result,
        reason=f"reconciled after the worker was lost: {outcome.detail}",
        needs_attention=outcome.needs_attention,
    )


def swapped_hosts(deployment: Deployment) -> set[str]:
    """Hosts where the deployment's record shows a swap begun (done or failed): the new
    version took effect there, so an outcome of "never went live" would be false."""
    return {
        str(step.get("host"))
        for step in deployment.steps or []
        if step.get("name") == "swap" and step.get("host")
    }


def previous_sha_on_hosts(deployment: Deployment) -> str | None:
    """What the hosts served before ``deployment``: as its own preflight read them.

    The registry's `previous_version` is only its belief: a host installed by hand
    before its first registry deployment has a model the registry never shipped,
    and restoring "nothing" there would delete that model. The preflight records
    (stored before any swap can happen) say what was really there; without them
    (the worker died before preflight, so nothing was touched) or if the hosts
    disagreed, the registry's belief is all there is.
    """
    seen = {
        ((step.get("data") or {}).get("current") or {}).get("onnx_sha256")
        for step in deployment.steps or []
        if step.get("name") == "preflight" and step.get("ok")
    }
    if len(seen) == 1:
        return seen.pop()
    previous = deployment.previous_version
    return previous.onnx_sha256 if previous is not None else None


def target_status(target: DeploymentTarget) -> dict[str, Any]:
    """Each host's live sha256 against what the registry says runs there.

    A host matches only if both its model files and its running engine are the
    registry's version (files swapped but never restarted do not count).
    """
    expected = live_version_on_target(target)
    expected_sha = expected.onnx_sha256 if expected else None
    name = _model_name_on(target, expected)
    policy_hash = policy_in_force(name).content_hash
    reports = runner.read_status(target_spec(target), name=name)
    hosts = {}
    for label, report in reports.items():
        state = report.state
        serving = (
            ModelVersion.objects.filter(onnx_sha256=state.live_sha256).first()
            if state is not None and state.live_sha256 and state.serves(state.live_sha256)
            else None
        )
        hosts[label] = {
            **report.to_dict(),
            "live_sha256": report.live_sha256,
            "files_sha256": state.onnx_sha256 if state else None,
            "matches_registry": state is not None and state.serves(expected_sha),
            # The version the host really serves (after the guide's manual rollback, the
            # kept previous one), so a report names it rather than calling it a mismatch.
            "serving_version": str(serving) if serving else None,
            "serving_backup": bool(state and state.serving_backup and serving),
            # Alive but trading nothing: its kill switch latched. Never "ok".
            "halted": engine_halted(state),
            # The engine does not trade at the policy costs shipped to the host.
            "costs_problem": state.costs_problem if state is not None else None,
            # The shipped costs are not the policy in force now (changed since): redeploy.
            "costs_stale": costs_stale(state, policy_hash),
        }
    busy = active_deployment(target)
    return {
        "target": target.name,
        "needs_attention": unresolved_needs_attention(target),
        # Every reason no deploy is accepted until a deployer acknowledges (attention.py).
        "attention": attention.open_attention(target),
        "registry_version": str(expected) if expected else None,
        "registry_sha256": expected_sha,
        "active_deployment": f"#{busy.pk} ({busy.status})" if busy else None,
        "hosts": hosts,
        "consistent": bool(hosts)
        and all(h["matches_registry"] and not h["halted"] for h in hosts.values()),
    }


def costs_stale(state: Any, policy_hash: str) -> str | None:
    """Why the costs file on a host is not the policy in force (None when it is)."""
    if state is None or state.onnx_sha256 is None:
        return None
    document = state.costs_document
    if not isinstance(document, dict):
        return "no policy costs file on the host: deploy to ship the policy's costs"
    if document.get("policy_hash") != policy_hash:
        return (
            f"the host has the costs of policy {str(document.get('policy_hash'))[:12]}, the "
            f"policy in force is {policy_hash[:12]}: deploy again to ship its costs"
        )
    return None


def engine_halted(state: Any) -> bool:
    """The host's engine runs with its kill switch latched (engine/live/runner.py)."""
    if state is None or state.engine_alive is False:
        return False
    document = state.status.document or {}
    return document.get("state") == "halted" or document.get("kill_switch") is True


# Moved to attention.py (it reads only flags and deployments); the name stays here too.
unresolved_needs_attention = attention.unresolved_needs_attention


def _model_name_on(target: DeploymentTarget, expected: ModelVersion | None) -> str:
    """The model file stem to read on the hosts: the live version's, else the last one sent."""
    if expected is not None:
        return expected.name
    last = target.deployments.select_related("model_version").order_by("-created_at").first()
    return last.model_version.name if last else target.name
