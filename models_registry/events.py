"""The event catalogue: every audit event type the registry writes, with what it means.

``AuditEvent.event_type`` takes its choices from ``EventType``; the audit writer refuses
a type that is not a member, and the database refuses one too (a CHECK constraint on
PostgreSQL, a trigger on SQLite: migration 0012_i24_event_catalogue). No event type is
built from pieces of strings: a new one is a new member here, with its one-line meaning,
and a new migration re-creating the database check (``event_type_check_values``).
"""

from __future__ import annotations

from django.db import models


class UnknownEventType(ValueError):
    """An audit event of a type the catalogue does not list."""


class EventType(models.TextChoices):
    # --- model versions: registration -------------------------------------------------
    MODEL_VERSION_TRAINED = "model_version_trained", "A version was trained here and registered."
    MODEL_VERSION_REGISTERED = (
        "model_version_registered",
        "A version trained elsewhere was registered from its folder.",
    )
    MODEL_VERSION_REGISTER_REFUSED = (
        "model_version_register_refused",
        "Registering a model folder was refused (the reason is in the data).",
    )
    MARKET_CONDITIONS_OVERRIDE = (
        "market_conditions_override",
        "A version was registered without its market-conditions record, by an explicit override.",
    )
    # --- model versions: lifecycle state ----------------------------------------------------
    MODEL_VERSION_VALIDATED = (
        "model_version_validated",
        "trained -> validated: a passing out-of-sample validation run.",
    )
    MODEL_VERSION_PAPER_TESTED = (
        "model_version_paper_tested",
        "staged -> paper_tested: a passing forward paper run on the staging target; "
        "approval is requested.",
    )
    MODEL_VERSION_STAGED = (
        "model_version_staged",
        "validated -> staged: a successful staging deployment after a passing replay; the "
        "forward paper run starts there.",
    )
    MODEL_VERSION_APPROVED = (
        "model_version_approved",
        "paper_tested -> approved: a second person approved the version's file for production.",
    )
    MODEL_VERSION_REJECTED = (
        "model_version_rejected",
        "A reviewer rejected a version before production.",
    )
    MODEL_VERSION_IN_PRODUCTION = (
        "model_version_in_production",
        "A production deployment of the version succeeded: it is live.",
    )
    MODEL_VERSION_RETIRED = (
        "model_version_retired",
        "in_production -> retired: a newer version replaced it on its last target.",
    )
    MODEL_VERSION_VALIDATE_REFUSED = (
        "model_version_validate_refused",
        "A request to mark a version validated was refused.",
    )
    MODEL_VERSION_MARK_PAPER_TESTED_REFUSED = (
        "model_version_mark_paper_tested_refused",
        "A request to mark a version paper-tested was refused.",
    )
    MODEL_VERSION_STAGE_REFUSED = (
        "model_version_stage_refused",
        "A request to mark a version staged was refused.",
    )
    MODEL_VERSION_APPROVE_REFUSED = (
        "model_version_approve_refused",
        "An approval was refused (role, four eyes, or missing evidence).",
    )
    MODEL_VERSION_REJECT_REFUSED = (
        "model_version_reject_refused",
        "A rejection was refused (role, missing reason, or the version's state).",
    )
    MODEL_VERSION_MARK_IN_PRODUCTION_REFUSED = (
        "model_version_mark_in_production_refused",
        "A request to mark a version in production was refused.",
    )
    # --- model versions: health -------------------------------------------------------------
    MODEL_VERSION_HEALTHY = (
        "model_version_healthy",
        "unknown -> healthy: the first scheduled re-validation of the version passed.",
    )
    MODEL_VERSION_DEGRADED = (
        "model_version_degraded",
        "A scheduled re-validation failed: the version is degraded, its approval suspended.",
    )
    MODEL_VERSION_RECOVERED = (
        "model_version_recovered",
        "degraded -> recovered: a later scheduled re-validation passed (approval stays off).",
    )
    # --- validation and paper runs ----------------------------------------------------------
    VALIDATION_REQUESTED = "validation_requested", "A validation run was requested (queued)."
    SCHEDULED_VALIDATION_STARTED = (
        "scheduled_validation_started",
        "Beat created the scheduled re-validation run of a slot (queued, then claimed).",
    )
    VALIDATION_RUN_STARTED = (
        "validation_run_started",
        "queued -> running: a worker claimed a validation run.",
    )
    VALIDATION_RUN_RECORDED = (
        "validation_run_recorded",
        "running -> passed or failed: a validation run's figures and gates were recorded.",
    )
    VALIDATION_RUN_ERROR = (
        "validation_run_error",
        "A validation run ended in error (no figures: bad data, broken model, broker refused).",
    )
    VALIDATION_RUN_RECONCILED = (
        "validation_run_reconciled",
        "A validation run stuck past its lease was ended as an error by reconcile.",
    )
    PAPER_RUN_REQUESTED = (
        "paper_run_requested",
        "A replay pre-check or a forward paper run was requested (queued).",
    )
    PAPER_RUN_STARTED = "paper_run_started", "queued -> running: a worker claimed a paper run."
    PAPER_RUN_RECORDED = (
        "paper_run_recorded",
        "running -> passed or failed: a paper run's figures and gates were recorded.",
    )
    PAPER_RUN_ERROR = "paper_run_error", "A paper run ended in error (no figures)."
    PAPER_RUN_RECONCILED = (
        "paper_run_reconciled",
        "A paper run stuck past its lease was ended as an error by reconcile.",
    )
    PAPER_RUN_NEEDS_ATTENTION = (
        "paper_run_needs_attention",
        "running -> needs_attention: a forward run's staging host cannot reach market data, "
        "or its journal could not be read after retries.",
    )
    PAPER_RUN_RESUMED = (
        "paper_run_resumed",
        "needs_attention -> running: the forward run's staging host trades on new bars again.",
    )
    STAGING_ENGINE_STOPPED = (
        "staging_engine_stopped",
        "The engine of a staged version was stopped on the staging hosts (replaced, rejected "
        "or its forward run ended); each host's result is in the data.",
    )
    # --- deployments ------------------------------------------------------------------------
    DEPLOY_REQUESTED = "deploy_requested", "A deployment was requested (queued or scheduled)."
    ROLLBACK_REQUESTED = "rollback_requested", "A rollback was requested (queued)."
    DEPLOYMENT_REQUEST_REFUSED = (
        "deployment_request_refused",
        "A deployment request was refused (the reason is in the data).",
    )
    ROLLBACK_REQUEST_REFUSED = (
        "rollback_request_refused",
        "A rollback request was refused (the reason is in the data).",
    )
    DEPLOYMENT_WINDOW_OPENED = (
        "deployment_window_opened",
        "scheduled -> queued: the target's deployment window opened.",
    )
    DEPLOYMENT_STARTED = (
        "deployment_started",
        "queued -> running: a worker claimed a deployment (before anything is uploaded).",
    )
    DEPLOYMENT_APPROVAL_WITHDRAWN = (
        "deployment_approval_withdrawn",
        "A deployment was stopped because its version's approval is no longer in force.",
    )
    DEPLOYMENT_STEP = "deployment_step", "One step of a deployment finished on one host."
    DEPLOY_FINISHED = "deploy_finished", "A deployment ended (succeeded, failed, rolled back...)."
    ROLLBACK_FINISHED = "rollback_finished", "A rollback ended."
    # --- targets and hosts ------------------------------------------------------------------
    DEPLOYMENT_TARGET_CREATED = "deployment_target_created", "A deployment target was created."
    DEPLOYMENT_TARGET_CHANGED = (
        "deployment_target_changed",
        "A deployment target's settings were changed.",
    )
    DEPLOYMENT_HOST_CREATED = "deployment_host_created", "A host was added to a target."
    DEPLOYMENT_HOST_CHANGED = "deployment_host_changed", "A host's settings were changed."
    DEPLOYMENT_TARGET_CHANGE_PROPOSED = (
        "deployment_target_change_proposed",
        "A change of a production target or host was proposed (pending a second deployer).",
    )
    DEPLOYMENT_TARGET_CHANGE_APPLIED = (
        "deployment_target_change_applied",
        "pending -> applied: a second deployer confirmed a production target change.",
    )
    HOST_CHECK = "host_check", "Someone looked at what each host of a target really serves."
    MODEL_VERSION_REAPPROVED = (
        "model_version_reapproved",
        "A version whose approval was suspended was approved again (its state is unchanged).",
    )
    MODEL_VERSION_REAPPROVE_REFUSED = (
        "model_version_reapprove_refused",
        "A new approval of a suspended version was refused (four eyes, evidence or state).",
    )
    # --- the validation policy (models_registry/services/policies.py) -------------------
    POLICY_SEEDED = (
        "policy_seeded",
        "The first validation policy was written from the settings (once, when none existed).",
    )
    POLICY_PROPOSED = (
        "policy_proposed",
        "A validation policy change was proposed (in force once a second person confirms).",
    )
    POLICY_CONFIRMED = (
        "policy_confirmed",
        "proposed -> in force: a second person confirmed a validation policy change.",
    )
    POLICY_WINDOW_LOOKED = (
        "policy_window_looked",
        "A --no-db run looked at a version's policy window: recorded as a counted trial.",
    )
    # --- targets that need attention (models_registry/services/attention.py) -------------
    TARGET_ATTENTION_RAISED = (
        "target_attention_raised",
        "A target needs attention (a deploy ended needs_attention, or a host check disagreed).",
    )
    TARGET_ATTENTION_ACKNOWLEDGED = (
        "target_attention_acknowledged",
        "open -> acknowledged: a deployer cleared a target after a clean host check.",
    )
    TARGET_ATTENTION_ACKNOWLEDGE_REFUSED = (
        "target_attention_acknowledge_refused",
        "Acknowledging a target's attention was refused (role, or the hosts still disagree).",
    )
    # --- deployments requested through the API ---------------------------------------------
    DEPLOYMENT_CANCELLED = (
        "deployment_cancelled",
        "scheduled -> cancelled: a deployer cancelled a deployment waiting for its window.",
    )
    DEPLOYMENT_CANCEL_REFUSED = (
        "deployment_cancel_refused",
        "Cancelling a deployment was refused (role, or it no longer waits).",
    )
    # --- the audit chain's witnesses (models_registry/services/audit_witness.py) ---------
    AUDIT_WITNESS_CHECKED = (
        "audit_witness_checked",
        "The scheduled check found the chain matching every witness host's copy of its head.",
    )
    AUDIT_WITNESS_MISMATCH = (
        "audit_witness_mismatch",
        "The chain is behind, or disagrees with, a witness host's copy of its head.",
    )
    # --- the HTTP API (models_registry/api/) ---------------------------------------------------
    API_TOKEN_CREATED = (
        "api_token_created",
        "An API token was created for a user (its secret shown once).",
    )
    API_TOKEN_REVOKED = "api_token_revoked", "An API token was revoked; it no longer authenticates."
    API_ACTION_REFUSED = (
        "api_action_refused",
        "An API request was refused (an approval through a token, or a role the token lacks).",
    )
    VALIDATION_FOLDS_DISPATCHED = (
        "validation_folds_dispatched",
        "A policy validation's re-fitted walk-forward folds were sent to the workers (a chord).",
    )
    # --- the admin --------------------------------------------------------------------------
    ADMIN_ACTION_REFUSED = (
        "admin_action_refused",
        "An admin action was posted by a user who does not hold its permission.",
    )


def event_type_checked(event_type: str) -> str:
    """``event_type`` if the catalogue lists it; else a one-line refusal naming it."""
    if event_type not in EventType.values:
        raise UnknownEventType(
            f"audit event type {event_type!r} is not in the event catalogue "
            "(models_registry/events.py): add it there with its meaning."
        )
    return str(event_type)


def event_type_meaning(event_type: str) -> str:
    return str(EventType(event_type).label) if event_type in EventType.values else ""
