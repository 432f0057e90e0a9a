"""Lifecycle services: source states, gates, four eyes, finality, audit, concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Q

from models_registry import selectors
from models_registry.guards import transition_write
from models_registry.models import (
    Approval,
    ApprovalSuspension,
    AuditEvent,
    DeploymentStatus,
    ModelState,
    ModelVersion,
    RegistryError,
    RunStatus,
    ValidationRun,
)
from models_registry.services import lifecycle
from models_registry.services.lifecycle import FourEyesViolation, GateFailed, TransitionRefused
from tests.registry.conftest import (
    OUT_OF_SAMPLE_FROM,
    finished_deployment,
    make_user,
    passing_forward_run,
    passing_paper_run,
    passing_validation_run,
    requires_postgresql,
)

pytestmark = pytest.mark.django_db


def events(event_type: str, version: ModelVersion | None = None) -> list[AuditEvent]:
    query = Q(event_type=event_type)
    if version is not None:
        query &= Q(object_type="ModelVersion", object_id=str(version.pk))
    return list(AuditEvent.objects.filter(query).order_by("id"))


def state_of(version: ModelVersion) -> str:
    return ModelVersion.objects.get(pk=version.pk).state


def assert_refused_and_recorded(
    version: ModelVersion, before: str, refused_event: str, actor: Any, match: str
) -> None:
    assert state_of(version) == before
    recorded = events(refused_event, version)
    assert len(recorded) == 1, f"expected one {refused_event} event"
    assert recorded[0].actor_id == actor.pk
    assert match in recorded[0].data["reason"]


# --- validate -------------------------------------------------------------------------


def validate(version: ModelVersion, run: ValidationRun, actor: Any) -> ModelVersion:
    return lifecycle.model_version_validate(model_version=version, validation_run=run, actor=actor)


def test_a_passing_out_of_sample_run_validates_with_one_audit_event(
    version_factory: Any, engineer: Any
) -> None:
    version = version_factory()
    run = passing_validation_run(version)  # born queued and walked to passed: its own events
    before = AuditEvent.objects.count()
    validate(version, run, engineer)
    assert state_of(version) == ModelState.VALIDATED
    assert version.state == ModelState.VALIDATED  # the caller's object is refreshed
    assert AuditEvent.objects.count() == before + 1
    event = events("model_version_validated", version)[0]
    assert event.actor_id == engineer.pk
    assert event.data == {
        "old_state": "trained",
        "new_state": "validated",
        "validation_run": run.pk,
    }


@pytest.mark.parametrize(
    ("run_fields", "message"),
    [
        ({"status": RunStatus.FAILED, "passed": False}, "did not pass"),
        ({"in_sample": True}, "in-sample"),
        ({"kind": ValidationRun.KIND_SCHEDULED}, "not a validation backtest"),
        ({"window_start": OUT_OF_SAMPLE_FROM - timedelta(days=1)}, "before the out-of-sample"),
    ],
    ids=["failing", "in-sample", "scheduled-kind", "window-before-oos"],
)
def test_validation_gate_refuses_bad_evidence(
    version_factory: Any, engineer: Any, run_fields: dict[str, Any], message: str
) -> None:
    version = version_factory()
    run = passing_validation_run(version, **run_fields)
    with pytest.raises(GateFailed, match=message):
        validate(version, run, engineer)
    assert_refused_and_recorded(
        version, ModelState.TRAINED, "model_version_validate_refused", engineer, message
    )


def test_validation_gate_refuses_a_run_of_another_version(
    version_factory: Any, engineer: Any
) -> None:
    version, other = version_factory(), version_factory()
    with pytest.raises(GateFailed, match="belongs to another version"):
        validate(version, passing_validation_run(other), engineer)
    assert state_of(version) == ModelState.TRAINED


def test_short_history_never_passes_a_gate(version_factory: Any, engineer: Any) -> None:
    version = version_factory(allow_short_history=True)
    with pytest.raises(GateFailed, match="allow-short-history"):
        validate(version, passing_validation_run(version), engineer)
    assert state_of(version) == ModelState.TRAINED


def test_the_gate_trusts_the_database_not_the_object_in_memory(
    version_factory: Any, engineer: Any
) -> None:
    version = version_factory()
    run = passing_validation_run(version, status=RunStatus.FAILED, passed=False)
    run.status, run.passed = RunStatus.PASSED, True  # edited in memory only
    with pytest.raises(GateFailed, match="did not pass"):
        validate(version, run, engineer)
    unsaved = ValidationRun(model_version=version, status=RunStatus.PASSED, passed=True)
    with pytest.raises(GateFailed, match="not on record"):
        validate(version, unsaved, engineer)
    assert state_of(version) == ModelState.TRAINED


def test_validate_from_the_wrong_state_is_refused(version_factory: Any, engineer: Any) -> None:
    version = version_factory(ModelState.VALIDATED)
    with pytest.raises(TransitionRefused, match="needs it to be trained"):
        validate(version, passing_validation_run(version), engineer)
    assert_refused_and_recorded(
        version, ModelState.VALIDATED, "model_version_validate_refused", engineer, "trained"
    )


# --- paper and staging ----------------------------------------------------------------


def test_the_forward_gate(version_factory: Any, engineer: Any, settings: Any) -> None:
    """staged -> paper_tested only on a passing forward run of this file on staging."""
    version = version_factory(ModelState.STAGED)
    staged_by = selectors.successful_staging_deployment(version)
    assert staged_by is not None
    for run, message in (
        (lambda: passing_forward_run(version, staged_by, status=RunStatus.FAILED, passed=False),
         "did not pass"),
        (lambda: passing_forward_run(version, staged_by, bars=50), "needs at least 336"),
        # A replay of stored bars is a pre-check, never the forward evidence.
        (lambda: passing_paper_run(version), "replay of stored bars"),
        (lambda: passing_forward_run(
            version, staged_by, config={"model_sha256": "0" * 64}), "different file"),
    ):  # fmt: skip
        with pytest.raises(GateFailed, match=message):
            lifecycle.model_version_mark_paper_tested(
                model_version=version, paper_run=run(), actor=engineer
            )
        assert state_of(version) == ModelState.STAGED
    # The period is the policy's paper.min_bars, overridable per model name.
    settings.TRADEBOT_GATE_OVERRIDES = {version.name: {"paper": {"min_bars": 40}}}
    lifecycle.model_version_mark_paper_tested(
        model_version=version, paper_run=passing_forward_run(version, staged_by, bars=50),
        actor=engineer,
    )  # fmt: skip
    assert state_of(version) == ModelState.PAPER_TESTED
    assert len(events("model_version_mark_paper_tested_refused", version)) == 4


@pytest.mark.parametrize(
    ("deployment_fields", "message"),
    [
        ({"compatibility": {"passed": False}}, "compatibility check"),
        ({"sha256": "0" * 64}, "different file"),
        ({"status": DeploymentStatus.FAILED}, "did not succeed"),
    ],
    ids=["compatibility-failed", "other-sha", "failed"],
)
def test_staging_gate_refuses_bad_deployments(
    version_factory: Any,
    engineer: Any,
    staging_target: Any,
    deployment_fields: dict[str, Any],
    message: str,
) -> None:
    version = version_factory(ModelState.VALIDATED)
    passing_paper_run(version)
    deployment = finished_deployment(version, staging_target, engineer, **deployment_fields)
    with pytest.raises(GateFailed, match=message):
        lifecycle.model_version_stage(model_version=version, deployment=deployment, actor=engineer)
    assert_refused_and_recorded(
        version, ModelState.VALIDATED, "model_version_stage_refused", engineer, message
    )


def test_staging_needs_a_passing_replay(
    version_factory: Any, engineer: Any, staging_target: Any
) -> None:
    version = version_factory(ModelState.VALIDATED)
    deployment = finished_deployment(version, staging_target, engineer)
    with pytest.raises(GateFailed, match="no passing replay"):
        lifecycle.model_version_stage(model_version=version, deployment=deployment, actor=engineer)
    assert state_of(version) == ModelState.VALIDATED


def test_staging_gate_refuses_a_production_deployment(
    version_factory: Any, engineer: Any, production_target: Any
) -> None:
    version = version_factory(ModelState.VALIDATED)
    passing_paper_run(version)
    deployment = finished_deployment(version, production_target, engineer)
    with pytest.raises(GateFailed, match="not staging"):
        lifecycle.model_version_stage(model_version=version, deployment=deployment, actor=engineer)
    assert state_of(version) == ModelState.VALIDATED


def test_the_forward_pass_records_who_requested_the_approval(
    version_factory: Any, engineer: Any
) -> None:
    staged = version_factory(ModelState.STAGED)
    assert staged.approval_requested_by_id is None
    version = version_factory(ModelState.PAPER_TESTED)
    assert version.approval_requested_by_id == engineer.pk
    assert version.approval_requested_at is not None


# --- approve: gates and four eyes ------------------------------------------------------


def approve(version: ModelVersion, user: Any, comment: str = "looked at everything") -> Approval:
    return lifecycle.model_version_approve(model_version=version, approved_by=user, comment=comment)


def test_approve_records_a_decision_for_the_exact_file(
    version_factory: Any, approver: Any, engineer: Any
) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    before = AuditEvent.objects.count()
    approval = approve(version, approver, "  sharpe fine, drawdown fine  ")
    assert state_of(version) == ModelState.APPROVED
    assert approval.decision == Approval.DECISION_APPROVED
    assert approval.sha256 == version.onnx_sha256
    assert approval.decided_by_id == approver.pk
    assert approval.requested_by_id == engineer.pk
    assert approval.comment == "sharpe fine, drawdown fine"
    assert AuditEvent.objects.count() == before + 1
    assert lifecycle.current_approval(version) == approval


@pytest.mark.parametrize("comment", ["", "   "])
def test_approve_needs_a_comment(version_factory: Any, approver: Any, comment: str) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    with pytest.raises(GateFailed, match="needs a comment"):
        approve(version, approver, comment)
    assert_refused_and_recorded(
        version, ModelState.PAPER_TESTED, "model_version_approve_refused", approver, "comment"
    )
    assert not Approval.objects.filter(model_version=version).exists()


@pytest.mark.parametrize(
    ("withdraw", "missing"),
    [
        ("validation_runs", "passing out-of-sample validation run"),
        ("paper_runs", "passing replay pre-check, a passing forward paper run on staging"),
        ("deployments", "successful staging deployment"),
    ],
)
def test_approve_needs_all_evidence_still_on_record(
    version_factory: Any, approver: Any, withdraw: str, missing: str
) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    related = getattr(version, withdraw)
    # Evidence that no longer holds; the database gate is opened on purpose, as only a
    # service may (a plain update is refused by the trigger: see test_state_protection).
    with transaction.atomic(), transition_write("test: evidence withdrawn"):
        if withdraw == "deployments":
            related.update(status=DeploymentStatus.ROLLED_BACK)
        else:
            related.update(status=RunStatus.FAILED, passed=False)
    with pytest.raises(GateFailed, match=missing):
        approve(version, approver)
    assert state_of(version) == ModelState.PAPER_TESTED
    assert not Approval.objects.filter(model_version=version).exists()


def test_the_trainer_cannot_approve_even_as_an_approver(version_factory: Any) -> None:
    trainer = make_user("tessa_both", "ML engineer", "Approver")
    version = version_factory(ModelState.PAPER_TESTED, trained_by=trainer)
    with pytest.raises(FourEyesViolation, match="trained or registered"):
        approve(version, trainer)
    assert_refused_and_recorded(
        version, ModelState.PAPER_TESTED, "model_version_approve_refused", trainer, "another person"
    )


def test_the_requester_cannot_approve(
    version_factory: Any, engineer: Any, staging_target: Any
) -> None:
    requester = make_user("rita_both", "ML engineer", "Approver")
    version = version_factory(ModelState.VALIDATED)
    passing_paper_run(version)
    deployment = finished_deployment(version, staging_target, requester)
    lifecycle.model_version_stage(model_version=version, deployment=deployment, actor=requester)
    lifecycle.model_version_mark_paper_tested(
        model_version=version, paper_run=passing_forward_run(version, deployment), actor=engineer
    )
    with pytest.raises(FourEyesViolation, match="requested the approval"):
        approve(version, requester)
    assert state_of(version) == ModelState.PAPER_TESTED


def test_a_superuser_who_trained_it_gets_no_exemption(version_factory: Any, superuser: Any) -> None:
    version = version_factory(ModelState.PAPER_TESTED, trained_by=superuser)
    with pytest.raises(FourEyesViolation):
        approve(version, superuser)
    assert state_of(version) == ModelState.PAPER_TESTED


def test_someone_without_the_approver_role_cannot_approve(
    version_factory: Any, second_engineer: Any
) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    with pytest.raises(GateFailed, match="approver role"):
        approve(version, second_engineer)
    assert state_of(version) == ModelState.PAPER_TESTED


# --- finality ------------------------------------------------------------------------


def test_a_decision_is_final_and_a_change_of_mind_is_a_new_row(
    version_factory: Any, approver: Any, second_approver: Any
) -> None:
    version = version_factory(ModelState.APPROVED)
    approval = lifecycle.current_approval(version)
    assert approval is not None
    approval.comment = "edited afterwards"
    with pytest.raises(RegistryError, match="final"):
        approval.save()
    with pytest.raises(RegistryError):
        Approval.objects.filter(pk=approval.pk).delete()

    rejection = lifecycle.model_version_reject(
        model_version=version, rejected_by=second_approver, comment="found a leak"
    )
    decisions = list(Approval.objects.filter(model_version=version).order_by("id"))
    assert [d.decision for d in decisions] == ["approved", "rejected"]
    assert decisions[0].comment == "checked the backtest"
    assert rejection.pk == decisions[1].pk
    assert lifecycle.current_approval(version) is None
    assert state_of(version) == ModelState.REJECTED


def test_a_suspended_approval_is_not_in_force(version_factory: Any) -> None:
    version = version_factory(ModelState.APPROVED)
    approval = lifecycle.current_approval(version)
    assert approval is not None
    ApprovalSuspension.objects.create(approval=approval, reason="degraded re-validation")
    assert lifecycle.current_approval(version) is None
    with pytest.raises(GateFailed, match="suspended"):
        lifecycle.require_deployable_approval(version)


# --- reject ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        ModelState.TRAINED,
        ModelState.VALIDATED,
        ModelState.STAGED,
        ModelState.PAPER_TESTED,
        ModelState.APPROVED,
    ],
)
def test_reject_from_every_pre_production_state(
    version_factory: Any, second_approver: Any, state: str
) -> None:
    version = version_factory(state)
    before = AuditEvent.objects.count()
    decision = lifecycle.model_version_reject(
        model_version=version, rejected_by=second_approver, comment="not convincing"
    )
    assert state_of(version) == ModelState.REJECTED
    assert decision.decision == Approval.DECISION_REJECTED
    assert AuditEvent.objects.count() == before + 1
    assert events("model_version_rejected", version)[0].data["old_state"] == state


@pytest.mark.parametrize("state", [ModelState.IN_PRODUCTION, ModelState.REJECTED])
def test_reject_is_refused_in_production_and_after(
    version_factory: Any, second_approver: Any, state: str
) -> None:
    version = version_factory(state)
    with pytest.raises(TransitionRefused):
        lifecycle.model_version_reject(
            model_version=version, rejected_by=second_approver, comment="too late"
        )
    assert_refused_and_recorded(
        version, state, "model_version_reject_refused", second_approver, "needs it to be"
    )


def test_reject_needs_the_approver_role_and_a_reason(
    version_factory: Any, engineer: Any, approver: Any
) -> None:
    version = version_factory()
    with pytest.raises(GateFailed, match="approver role"):
        lifecycle.model_version_reject(model_version=version, rejected_by=engineer, comment="x")
    with pytest.raises(GateFailed, match="reason"):
        lifecycle.model_version_reject(model_version=version, rejected_by=approver, comment=" ")
    assert state_of(version) == ModelState.TRAINED
    assert len(events("model_version_reject_refused", version)) == 2


# --- production --------------------------------------------------------------------------


def test_going_live_retires_the_version_it_replaced(version_factory: Any, deployer: Any) -> None:
    old = version_factory(ModelState.IN_PRODUCTION)
    new = version_factory(ModelState.APPROVED)
    # The fixture's deployment walks to succeeded with its own events: count the versions'.
    before = AuditEvent.objects.exclude(object_type="Deployment").count()
    version_factory.deploy_to_production(new, previous=old)
    assert state_of(new) == ModelState.IN_PRODUCTION
    assert state_of(old) == ModelState.RETIRED
    assert AuditEvent.objects.exclude(object_type="Deployment").count() == before + 2
    retired = events("model_version_retired", old)[0]
    assert retired.data["replaced_by"] == new.pk
    assert retired.actor_id == deployer.pk


def test_going_live_needs_the_approved_file(
    version_factory: Any, deployer: Any, production_target: Any
) -> None:
    version = version_factory(ModelState.APPROVED)
    wrong_file = finished_deployment(version, production_target, deployer, sha256="1" * 64)
    with pytest.raises(GateFailed, match="not the approved one"):
        lifecycle.model_version_mark_in_production(
            model_version=version, deployment=wrong_file, actor=deployer
        )
    failed = finished_deployment(
        version, production_target, deployer, status=DeploymentStatus.FAILED
    )
    with pytest.raises(GateFailed, match="did not succeed"):
        lifecycle.model_version_mark_in_production(
            model_version=version, deployment=failed, actor=deployer
        )
    assert state_of(version) == ModelState.APPROVED
    assert len(events("model_version_mark_in_production_refused", version)) == 2


def test_a_suspended_approval_cannot_go_live(
    version_factory: Any, deployer: Any, production_target: Any
) -> None:
    version = version_factory(ModelState.APPROVED)
    ApprovalSuspension.objects.create(approval=lifecycle.current_approval(version), reason="drift")
    deployment = finished_deployment(version, production_target, deployer)
    with pytest.raises(GateFailed, match="suspended"):
        lifecycle.model_version_mark_in_production(
            model_version=version, deployment=deployment, actor=deployer
        )
    assert state_of(version) == ModelState.APPROVED


# --- concurrency ---------------------------------------------------------------------


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_one_wins(
    version_factory: Any, approver: Any, second_approver: Any
) -> None:
    version = version_factory(ModelState.PAPER_TESTED)
    barrier = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def click(user: Any) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[user.username] = approve(version, user, f"ok from {user.username}")
        except Exception as exc:
            outcomes[user.username] = exc
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=click, args=(u,)) for u in (approver, second_approver)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    won = [o for o in outcomes.values() if isinstance(o, Approval)]
    lost = [o for o in outcomes.values() if isinstance(o, Exception)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], TransitionRefused)
    assert Approval.objects.filter(model_version=version).count() == 1
    assert len(events("model_version_approved", version)) == 1
    assert len(events("model_version_approve_refused", version)) == 1
    assert state_of(version) == ModelState.APPROVED
