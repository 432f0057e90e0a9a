"""One concern: the shapes the API reads and writes, checked before a service sees them.

What the API reads and writes. Read serializers shape registry rows; input serializers
check a request before a service sees it (services check again, under their locks)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from models_registry import exports
from models_registry.gates import DEFAULT_GATES, gates_for, validation_policy_for
from models_registry.models import (
    Approval,
    AuditEvent,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    Environment,
    HealthStatus,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    ValidationRun,
)
from models_registry.policy import loosenings, policy_name
from models_registry.services import deployments as deployment_services
from models_registry.verdicts import loosening_words

MAX_INT = 2**31 - 1
MAX_ID = 2**63 - 1


def _username(relation: str) -> serializers.CharField:
    """The username of a user relation, or null."""
    return serializers.CharField(source=f"{relation}.username", read_only=True, allow_null=True)


class _UrlMixin(serializers.Serializer):
    url = serializers.SerializerMethodField()
    url_name = ""

    def get_url(self, obj: Any) -> str:
        return reverse(self.url_name, args=[obj.pk], request=self.context.get("request"))


def verdict_of(run: ValidationRun | PaperTradingRun) -> str:
    if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        return "pending"
    if run.status == RunStatus.ERROR:
        return "error"
    return "passed" if run.passed else "failed"


# --- runs --------------------------------------------------------------------------------


class ValidationRunSerializer(_UrlMixin):
    url_name = "api:validation-run-detail"
    id = serializers.IntegerField(read_only=True)
    model_version = serializers.IntegerField(source="model_version_id", read_only=True)
    model = serializers.CharField(source="model_version.name", read_only=True)
    version = serializers.IntegerField(source="model_version.version", read_only=True)
    kind = serializers.CharField(read_only=True)
    strategy = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(choices=RunStatus.choices, read_only=True)
    verdict = serializers.SerializerMethodField()
    passed = serializers.BooleanField(read_only=True, allow_null=True)
    requested_by = _username("requested_by")
    created_at = serializers.DateTimeField(read_only=True)
    started_at = serializers.DateTimeField(read_only=True, allow_null=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)
    window_start = serializers.DateTimeField(read_only=True, allow_null=True)
    window_end = serializers.DateTimeField(read_only=True, allow_null=True)
    data_content_hash = serializers.CharField(read_only=True)
    in_sample = serializers.BooleanField(read_only=True)
    exploratory = serializers.BooleanField(read_only=True)
    exploratory_reasons = serializers.ListField(child=serializers.CharField(), read_only=True)
    metrics = serializers.DictField(read_only=True)
    benchmark_metrics = serializers.DictField(read_only=True)
    gate_results = serializers.ListField(child=serializers.DictField(), read_only=True)
    drift = serializers.DictField(read_only=True)
    policy = serializers.SerializerMethodField()
    error = serializers.CharField(read_only=True)

    @extend_schema_field(serializers.ChoiceField(choices=["pending", "passed", "failed", "error"]))
    def get_verdict(self, run: ValidationRun) -> str:
        return verdict_of(run)

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_policy(self, run: ValidationRun) -> dict[str, Any]:
        """What the run was judged under, as the run recorded it: costs and window, gates,
        counted trials; exploratory runs (other costs or window) never move a version."""
        config = run.config or {}
        return {
            **_recorded_policy(run, "validation"),
            "exploratory": run.exploratory,
            "exploratory_reasons": list(run.exploratory_reasons or []),
            "costs_and_window": config.get("policy"),
            "policy_window": config.get("policy_window"),
            "gates": config.get("gates"),
            "trials": config.get("trials"),
            "requested_options": {
                key: config.get(key)
                for key in ("days", "start", "end", "fee_bps", "slippage_bps", "walk_forward")
                if key in config
            },
        }


class PaperRunSerializer(_UrlMixin):
    url_name = "api:paper-run-detail"
    id = serializers.IntegerField(read_only=True)
    model_version = serializers.IntegerField(source="model_version_id", read_only=True)
    model = serializers.CharField(source="model_version.name", read_only=True)
    version = serializers.IntegerField(source="model_version.version", read_only=True)
    status = serializers.ChoiceField(choices=RunStatus.choices, read_only=True)
    verdict = serializers.SerializerMethodField()
    passed = serializers.BooleanField(read_only=True, allow_null=True)
    mode = serializers.CharField(read_only=True)
    requested_by = _username("requested_by")
    created_at = serializers.DateTimeField(read_only=True)
    started_at = serializers.DateTimeField(read_only=True, allow_null=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)
    period_start = serializers.DateTimeField(read_only=True, allow_null=True)
    period_end = serializers.DateTimeField(read_only=True, allow_null=True)
    bars = serializers.IntegerField(read_only=True)
    trades = serializers.IntegerField(read_only=True)
    metrics = serializers.DictField(read_only=True)
    divergence = serializers.DictField(read_only=True)
    gate_results = serializers.ListField(child=serializers.DictField(), read_only=True)
    policy = serializers.SerializerMethodField()
    error = serializers.CharField(read_only=True)

    @extend_schema_field(serializers.ChoiceField(choices=["pending", "passed", "failed", "error"]))
    def get_verdict(self, run: PaperTradingRun) -> str:
        return verdict_of(run)

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_policy(self, run: PaperTradingRun) -> dict[str, Any]:
        return {
            **_recorded_policy(run, "paper"),
            "exploratory": run.exploratory,
            "exploratory_reasons": list(run.exploratory_reasons or []),
            "options": dict(run.config or {}),
            "gate_results": list(run.gate_results or []),
        }


def _recorded_policy(run: ValidationRun | PaperTradingRun, stage: str) -> dict[str, Any]:
    """The validation policy the run recorded (issue 25): its name, version and hash, and in
    words each gate or cost it loosens against the shipped defaults (empty: none)."""
    policy = run.policy if run.policy_id else None
    if policy is None:
        return {"name": None, "number": None, "hash": None, "loosened": []}
    return {
        "name": policy_name(policy),
        "number": policy.number,
        "hash": policy.content_hash,
        "loosened": [loosening_words(item, stage) for item in loosenings(policy.content)],
    }


# --- versions ----------------------------------------------------------------------------


class ApprovalSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    decision = serializers.CharField(read_only=True)
    decided_by = _username("decided_by")
    decided_at = serializers.DateTimeField(read_only=True)
    comment = serializers.CharField(read_only=True)
    sha256 = serializers.CharField(read_only=True)
    requested_by = _username("requested_by")
    suspensions = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_suspensions(self, approval: Approval) -> list[dict[str, Any]]:
        return [
            {"created_at": s.created_at.isoformat(), "reason": s.reason,
             "validation_run": s.validation_run_id}
            for s in approval.suspensions.all()
        ]  # fmt: skip


class DeploymentSummarySerializer(_UrlMixin):
    url_name = "api:deployment-detail"
    id = serializers.IntegerField(read_only=True)
    target = serializers.CharField(source="target.name", read_only=True)
    kind = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(choices=DeploymentStatus.choices, read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)


class VersionSerializer(_UrlMixin):
    url_name = "api:version-detail"
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    version = serializers.IntegerField(read_only=True)
    symbol = serializers.CharField(read_only=True)
    interval = serializers.CharField(read_only=True)
    kind = serializers.CharField(read_only=True)
    state = serializers.ChoiceField(choices=ModelState.choices, read_only=True)
    health = serializers.ChoiceField(choices=HealthStatus.choices, read_only=True)
    health_changed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    source = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    created_by = _username("created_by")
    onnx_sha256 = serializers.CharField(read_only=True)


class LineageSerializer(serializers.Serializer):
    source = serializers.CharField(read_only=True)
    origin_key = serializers.CharField(read_only=True, allow_null=True)
    data_start = serializers.DateTimeField(read_only=True, allow_null=True)
    data_end = serializers.DateTimeField(read_only=True, allow_null=True)
    data_content_hash = serializers.CharField(read_only=True)
    fit_start = serializers.DateTimeField(read_only=True, allow_null=True)
    fit_end = serializers.DateTimeField(read_only=True, allow_null=True)
    selection_start = serializers.DateTimeField(read_only=True, allow_null=True)
    selection_end = serializers.DateTimeField(read_only=True, allow_null=True)
    first_unseen_at = serializers.DateTimeField(read_only=True, allow_null=True)
    out_of_sample_from = serializers.DateTimeField(read_only=True, allow_null=True)
    allow_short_history = serializers.BooleanField(read_only=True)


class ArtifactsSerializer(serializers.Serializer):
    onnx_file = serializers.CharField(read_only=True)
    onnx_sha256 = serializers.CharField(read_only=True)
    metadata_file = serializers.CharField(read_only=True)
    metadata_sha256 = serializers.CharField(read_only=True)
    plot_file = serializers.CharField(read_only=True)
    plot_sha256 = serializers.CharField(read_only=True)


class VersionDetailSerializer(VersionSerializer):
    lineage = LineageSerializer(source="*", read_only=True)
    artifacts = ArtifactsSerializer(source="*", read_only=True)
    metrics = serializers.DictField(read_only=True)
    gates = serializers.SerializerMethodField()
    validation_policy = serializers.SerializerMethodField()
    approval_requested_by = _username("approval_requested_by")
    approval_requested_at = serializers.DateTimeField(read_only=True, allow_null=True)
    approvals = ApprovalSerializer(many=True, read_only=True)
    validation_runs = ValidationRunSerializer(many=True, read_only=True)
    paper_runs = PaperRunSerializer(many=True, read_only=True)
    deployments = DeploymentSummarySerializer(many=True, read_only=True)

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_gates(self, version: ModelVersion) -> dict[str, Any]:
        """The thresholds in force now for this model name, per stage."""
        return {stage: gates_for(version.name, stage) for stage in DEFAULT_GATES}

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_validation_policy(self, version: ModelVersion) -> dict[str, Any]:
        return validation_policy_for(version.name)


class ModelNameSerializer(serializers.Serializer):
    name = serializers.CharField(read_only=True)
    versions = serializers.IntegerField(read_only=True)
    latest_version = serializers.IntegerField(read_only=True)
    latest_created_at = serializers.DateTimeField(read_only=True)


# --- targets and deployments ---------------------------------------------------------------


class HostSerializer(serializers.Serializer):
    hostname = serializers.CharField(read_only=True)
    port = serializers.IntegerField(read_only=True, allow_null=True)
    enabled = serializers.BooleanField(read_only=True)


class TargetSerializer(_UrlMixin):
    url_name = "api:target-detail"
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    environment = serializers.ChoiceField(choices=Environment.choices, read_only=True)
    is_local = serializers.BooleanField(read_only=True)
    allowed_hours = serializers.CharField(read_only=True)
    hosts = HostSerializer(many=True, read_only=True)
    serving = serializers.SerializerMethodField()
    active_deployment = serializers.SerializerMethodField()

    @extend_schema_field(VersionSerializer(allow_null=True))
    def get_serving(self, target: DeploymentTarget) -> dict[str, Any] | None:
        """The version the registry believes this target runs now (its last success)."""
        live = deployment_services.live_version_on_target(target)
        return VersionSerializer(live, context=self.context).data if live else None

    @extend_schema_field(DeploymentSummarySerializer(allow_null=True))
    def get_active_deployment(self, target: DeploymentTarget) -> dict[str, Any] | None:
        active = deployment_services.active_deployment(target)
        return DeploymentSummarySerializer(active, context=self.context).data if active else None


class DeploymentSerializer(DeploymentSummarySerializer):
    target_id = serializers.IntegerField(read_only=True)
    model_version = serializers.IntegerField(source="model_version_id", read_only=True)
    model = serializers.CharField(source="model_version.name", read_only=True)
    version = serializers.IntegerField(source="model_version.version", read_only=True)
    previous_version = serializers.IntegerField(
        source="previous_version_id", read_only=True, allow_null=True
    )
    requested_by = _username("requested_by")
    approved_by = serializers.CharField(
        source="approval.decided_by.username", read_only=True, allow_null=True, default=None
    )
    scheduled_for = serializers.DateTimeField(read_only=True, allow_null=True)
    started_at = serializers.DateTimeField(read_only=True, allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    forced_reason = serializers.CharField(read_only=True)
    sha256 = serializers.CharField(read_only=True)
    steps = serializers.ListField(child=serializers.DictField(), read_only=True)
    compatibility = serializers.DictField(read_only=True)
    log_tail = serializers.CharField(read_only=True)
    error = serializers.CharField(read_only=True)


# --- audit ---------------------------------------------------------------------------------


class AuditEventSerializer(serializers.Serializer):
    """Every hashed column, ``event_time`` as the exports write it, so a row can be re-hashed."""

    id = serializers.IntegerField(read_only=True)
    event_time = serializers.SerializerMethodField()
    event_type = serializers.CharField(read_only=True)
    actor_id = serializers.IntegerField(read_only=True, allow_null=True)
    actor_repr = serializers.CharField(read_only=True)
    object_type = serializers.CharField(read_only=True)
    object_id = serializers.CharField(read_only=True)
    object_repr = serializers.CharField(read_only=True)
    data = serializers.DictField(read_only=True)
    prev_hash = serializers.CharField(read_only=True)
    row_hash = serializers.CharField(read_only=True)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_event_time(self, event: AuditEvent) -> str | None:
        return exports._iso(event.event_time)


class ChainReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField()
    first_broken_id = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    keyed = serializers.BooleanField()
    anchors_checked = serializers.IntegerField()
    last_id = serializers.IntegerField(allow_null=True)
    last_hash = serializers.CharField(allow_null=True)


class ExportReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField()
    first_bad_line = serializers.IntegerField(allow_null=True)
    first_bad_id = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    text = serializers.CharField()


class WhoAmISerializer(serializers.Serializer):
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
    permissions = serializers.ListField(child=serializers.CharField())
    token_name = serializers.CharField()
    token_prefix = serializers.CharField()
    token_expires_at = serializers.DateTimeField()


# --- inputs ----------------------------------------------------------------------------------


class RegisterInput(serializers.Serializer):
    """The admin's upload form, over HTTP: names come from the metadata, never the upload."""

    onnx_file = serializers.FileField(help_text="The .onnx model.")
    metadata_file = serializers.FileField(help_text="Its *_metadata.json.")
    plot_file = serializers.FileField(required=False, help_text="Optional training plot (PNG).")
    allow_missing_conditions = serializers.CharField(
        required=False,
        max_length=2000,
        help_text=(
            "Register although the training data lacks an up, down or sideways 30-day window: "
            "the reason, recorded with the version (as register_model --allow-missing-conditions)."
        ),
    )


class EmptyInput(serializers.Serializer):
    """No options: the run is judged under the policy in force for the model name."""


class DeployInput(serializers.Serializer):
    target = serializers.CharField(max_length=100, help_text="The target's name.")
    force_reason = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Only to deploy outside the target's window: say why (audited).",
    )
    schedule = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Outside the window: schedule for the start of the next one instead.",
    )


class RollbackInput(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, help_text="Why (audited).")
    to_version = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_INT,
        help_text="Version number to restore; default: the one that ran before.",
    )  # fmt: skip
    model_name = serializers.CharField(max_length=100, required=False, allow_null=True)


class CancelInput(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="Why (audited).")


class VerifyExportInput(serializers.Serializer):
    file = serializers.FileField(help_text="An audit export (CSV or JSON Lines) to re-check.")


# --- query filters -----------------------------------------------------------------------------


@extend_schema_field(
    {
        "type": "string",
        "example": "2025-03-12T14:00Z",
        "description": "ISO 8601 date and time; UTC unless it gives an offset.",
    }
)
class IsoDateTimeFilter(serializers.DateTimeField):
    """The project's date rule (README: ISO 8601 only, UTC unless an offset is given), which is
    wider than OpenAPI's RFC 3339 ``date-time``: the schema says what is really accepted."""


class VersionFilter(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=100)
    version = serializers.IntegerField(required=False, min_value=1, max_value=MAX_INT)
    state = serializers.ChoiceField(required=False, choices=ModelState.choices)
    health = serializers.ChoiceField(required=False, choices=HealthStatus.choices)
    symbol = serializers.CharField(required=False, max_length=20)
    created_after = IsoDateTimeFilter(required=False)
    created_before = IsoDateTimeFilter(required=False)

    lookups = {
        "name": "name", "version": "version", "state": "state", "health": "health",
        "symbol": "symbol__iexact", "created_after": "created_at__gte",
        "created_before": "created_at__lt",
    }  # fmt: skip


class ModelNameFilter(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=100)

    lookups = {"name": "name__icontains"}


class RunFilter(serializers.Serializer):
    model_version = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    model = serializers.CharField(required=False, max_length=100)
    status = serializers.ChoiceField(required=False, choices=RunStatus.choices)
    passed = serializers.ChoiceField(required=False, choices=["true", "false"])

    lookups = {
        "model_version": "model_version_id", "model": "model_version__name",
        "status": "status", "passed": "passed",
    }  # fmt: skip


class ValidationRunFilter(RunFilter):
    kind = serializers.ChoiceField(required=False, choices=ValidationRun.KIND_CHOICES)
    exploratory = serializers.ChoiceField(required=False, choices=["true", "false"])

    lookups = {**RunFilter.lookups, "kind": "kind", "exploratory": "exploratory"}


class TargetFilter(serializers.Serializer):
    environment = serializers.ChoiceField(required=False, choices=Environment.choices)

    lookups = {"environment": "environment"}


class DeploymentFilter(serializers.Serializer):
    target = serializers.CharField(required=False, max_length=100)
    model_version = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    model = serializers.CharField(required=False, max_length=100)
    status = serializers.ChoiceField(required=False, choices=DeploymentStatus.choices)
    kind = serializers.ChoiceField(
        required=False, choices=[Deployment.KIND_DEPLOY, Deployment.KIND_ROLLBACK]
    )

    lookups = {
        "target": "target__name", "model_version": "model_version_id",
        "model": "model_version__name", "status": "status", "kind": "kind",
    }  # fmt: skip


class AuditEventFilter(serializers.Serializer):
    event_type = serializers.CharField(required=False, max_length=60)
    object_type = serializers.CharField(required=False, max_length=60)
    object_id = serializers.CharField(required=False, max_length=60)
    actor = serializers.CharField(required=False, max_length=150, help_text="actor_repr")
    after_id = serializers.IntegerField(required=False, min_value=0, max_value=MAX_ID)
    since = IsoDateTimeFilter(required=False)
    until = IsoDateTimeFilter(required=False)

    lookups = {
        "event_type": "event_type", "object_type": "object_type", "object_id": "object_id",
        "actor": "actor_repr", "after_id": "id__gt", "since": "event_time__gte",
        "until": "event_time__lt",
    }  # fmt: skip


class ExportFormatFilter(AuditEventFilter):
    format = serializers.ChoiceField(choices=sorted(exports.FORMATS), default="jsonl")
