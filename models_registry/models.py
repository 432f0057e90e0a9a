"""One concern: the registry's tables and their guards (Django loads an app's models as one module).

The registry: model versions, their validations, approvals, deployments and the audit trail.

State lives here and changes only through the services in
``models_registry.services``: the ``state`` field refuses any other write
(``save()`` of a changed state outside a transition, ``QuerySet.update(state=...)``,
``bulk_update`` with ``state``). Records are never deleted.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar, Self, TypeVar

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import F, Q

from deployment.identity import LOOPBACK, canonical_address, canonical_root, local_real_root
from models_registry.events import EventType
from models_registry.guards import GATE_CLOSED_SQL


def lifecycle_column_guard(name: str, column: str) -> pgtrigger.Trigger:
    """A PostgreSQL trigger refusing a change of ``column`` outside a transition service.

    ``QuerySet.update``, ``_base_manager.update`` and raw SQL all reach the table; only
    a service that opened ``models_registry.guards.transition_write`` gets through.
    """
    return pgtrigger.Trigger(
        name=name,
        operation=pgtrigger.Update,
        when=pgtrigger.Before,
        condition=pgtrigger.Condition(
            f'OLD."{column}" IS DISTINCT FROM NEW."{column}" AND {GATE_CLOSED_SQL}'
        ),
        func=(
            f"RAISE EXCEPTION '% %: {column} % -> % changes only through a transition service', "
            f'TG_TABLE_NAME, OLD.id, OLD."{column}", NEW."{column}"; RETURN NULL;'
        ),
    )


def born_in_guard(name: str, column: str, initial: tuple[str, ...]) -> pgtrigger.Trigger:
    """A PostgreSQL trigger refusing a new row whose ``column`` is not an initial status.

    A row born ``passed`` or ``succeeded`` would be evidence no transition wrote; the
    transitions' own tables (``models_registry.transitions``) list the same initial
    statuses (tests/registry/test_status_guards.py holds them together).
    """
    allowed = ", ".join(f"'{value}'" for value in initial)
    return pgtrigger.Trigger(
        name=name,
        operation=pgtrigger.Insert,
        when=pgtrigger.Before,
        condition=pgtrigger.Condition(f'NEW."{column}" NOT IN ({allowed}) AND {GATE_CLOSED_SQL}'),
        func=(
            f"RAISE EXCEPTION 'a new row of % starts in {column} {' or '.join(initial)}, not %', "
            f'TG_TABLE_NAME, NEW."{column}"; RETURN NULL;'
        ),
    )


class RegistryError(Exception):
    """A lifecycle rule refused an operation; the message says which and why."""


class StateChangeRefused(RegistryError):
    """Something tried to write a state outside a lifecycle service."""


class DeletionRefused(RegistryError):
    """Registry and audit records are kept for auditors: they are never deleted."""


class ModelState(models.TextChoices):
    TRAINED = "trained", "Trained"
    VALIDATED = "validated", "Validated"
    STAGED = "staged", "Staged"
    PAPER_TESTED = "paper_tested", "Paper tested"
    APPROVED = "approved", "Approved"
    IN_PRODUCTION = "in_production", "In production"
    RETIRED = "retired", "Retired"
    REJECTED = "rejected", "Rejected"


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Not yet re-validated"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    RECOVERED = "recovered", "Recovered"


class NoDeleteQuerySet(models.QuerySet):
    def delete(self) -> Any:
        raise DeletionRefused(f"{self.model.__name__} records are never deleted.")


class ProtectedStateQuerySet(NoDeleteQuerySet):
    def update(self, **kwargs: Any) -> int:
        if "state" in kwargs:
            raise StateChangeRefused(
                "state is written only by a lifecycle service, never by QuerySet.update()."
            )
        return super().update(**kwargs)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        initial = getattr(self.model, "_initial_state", None)
        if any(getattr(obj, "state", initial) != initial for obj in objs):
            raise StateChangeRefused(f"new records start in state {initial!r}.")
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs: Any, fields: Any, *args: Any, **kwargs: Any) -> int:
        if "state" in fields:
            raise StateChangeRefused("state is written only by a lifecycle service.")
        return super().bulk_update(objs, fields, *args, **kwargs)


class StateProtectedModel(models.Model):
    """A model whose ``state`` changes only inside ``allow_state_change()`` of a service."""

    objects = ProtectedStateQuerySet.as_manager()
    # Each concrete model declares its own ``state`` field with its own choices.
    state: str
    _loaded_state: str | None  # the state as read from the database, None before
    _state_change_allowed = False
    _initial_state = "trained"

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        loaded = getattr(self, "_loaded_state", None)
        if self.pk is None and self.state != self._initial_state and not self._state_change_allowed:
            raise StateChangeRefused(
                f"A new {type(self).__name__} starts in state {self._initial_state!r}."
            )
        changed = self.pk is not None and loaded is not None and loaded != self.state
        if changed and not self._state_change_allowed:
            raise StateChangeRefused(
                f"{type(self).__name__} {self.pk}: state {loaded!r} -> {self.state!r} "
                "must go through a lifecycle service."
            )
        super().save(*args, **kwargs)
        self._loaded_state = self.state

    @classmethod
    def from_db(
        cls, db: str | None, field_names: Collection[str], values: Collection[Any], **kwargs: Any
    ) -> Self:
        instance = super().from_db(db, field_names, values, **kwargs)
        instance._loaded_state = instance.__dict__.get("state")
        return instance

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._loaded_state = self.state

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise DeletionRefused(f"{type(self).__name__} records are never deleted.")


class ModelVersion(StateProtectedModel):
    name = models.CharField(max_length=100, help_text="e.g. btcusdt_sentiment")
    version = models.PositiveIntegerField()
    symbol = models.CharField(max_length=20)
    interval = models.CharField(max_length=8, default="1h")
    kind = models.CharField(max_length=20, help_text="sentiment or price")
    state = models.CharField(
        max_length=20, choices=ModelState.choices, default=ModelState.TRAINED, db_index=True
    )
    source = models.CharField(
        max_length=20,
        choices=[("trained", "Trained here"), ("registered", "Registered from elsewhere")],
        default="trained",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who trained or registered this version.",
    )
    artifact_dir = models.CharField(max_length=500, help_text="Relative to the artifact store.")
    onnx_file = models.CharField(max_length=200)
    onnx_sha256 = models.CharField(max_length=64, db_index=True)
    metadata_file = models.CharField(max_length=200)
    metadata_sha256 = models.CharField(max_length=64)
    plot_file = models.CharField(max_length=200, blank=True)
    plot_sha256 = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    data_start = models.DateTimeField(null=True, blank=True)
    data_end = models.DateTimeField(null=True, blank=True)
    data_content_hash = models.CharField(max_length=64, blank=True)
    out_of_sample_from = models.DateTimeField(null=True, blank=True)
    # The windows the version states about itself, from its metadata's splits (#12):
    # models_registry/windows.py says how each is derived.
    fit_start = models.DateTimeField(null=True, blank=True, help_text="First bar the fit read.")
    fit_end = models.DateTimeField(null=True, blank=True, help_text="Last bar the fit read.")
    selection_start = models.DateTimeField(
        null=True, blank=True, help_text="First bar of the split that chose it (early stopping)."
    )
    selection_end = models.DateTimeField(
        null=True, blank=True, help_text="Last bar of the split that chose it."
    )
    first_unseen_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="First bar after all data training and selection touched, test split included.",
    )
    allow_short_history = models.BooleanField(
        default=False, help_text="Trained on less history than the guide asks: never passes a gate."
    )
    origin_key = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        unique=True,
        help_text="Idempotency key (training task id) so a redelivered task makes one version.",
    )
    approval_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approval_requested_at = models.DateTimeField(null=True, blank=True)
    health = models.CharField(
        max_length=20, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN
    )
    health_changed_at = models.DateTimeField(null=True, blank=True)
    last_scheduled_window_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_version_per_name"),
            # One first out-of-sample bar, however it is named: no version contradicts itself.
            models.CheckConstraint(
                condition=Q(out_of_sample_from__isnull=True)
                | Q(first_unseen_at__isnull=True)
                | Q(out_of_sample_from=F("first_unseen_at")),
                name="out_of_sample_from_is_first_unseen_at",
            ),
            models.CheckConstraint(
                condition=Q(fit_end__isnull=True)
                | Q(first_unseen_at__isnull=True)
                | Q(fit_end__lt=F("first_unseen_at")),
                name="fit_ends_before_first_unseen_at",
            ),
            models.CheckConstraint(
                condition=Q(selection_end__isnull=True)
                | Q(first_unseen_at__isnull=True)
                | Q(selection_end__lt=F("first_unseen_at")),
                name="selection_ends_before_first_unseen_at",
            ),
        ]
        triggers: ClassVar = [
            lifecycle_column_guard("version_state_guard", "state"),
            lifecycle_column_guard("version_health_guard", "health"),
            born_in_guard("version_born_health_unknown", "health", ("unknown",)),
            pgtrigger.Trigger(
                name="version_starts_trained",
                operation=pgtrigger.Insert,
                when=pgtrigger.Before,
                condition=pgtrigger.Condition(f"NEW.state <> 'trained' AND {GATE_CLOSED_SQL}"),
                func=(
                    "RAISE EXCEPTION 'a new model version starts in state trained, not %', "
                    "NEW.state; RETURN NULL;"
                ),
            ),
        ]
        permissions: ClassVar = [
            ("train_model", "Can start training"),
            ("validate_modelversion", "Can run validation backtests"),
            ("papertrade_modelversion", "Can run paper trading"),
            ("stage_modelversion", "Can deploy to staging"),
            ("approve_modelversion", "Can approve a version for production"),
            ("reject_modelversion", "Can reject a version"),
            ("deploy_modelversion", "Can deploy to production"),
            ("rollback_modelversion", "Can roll back production"),
            ("register_modelversion", "Can register a model trained elsewhere"),
            ("export_audit", "Can export audit records"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.state})"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed gates"
    ERROR = "error", "Error"
    # Forward paper runs only: the staging host cannot reach market data, or its journal
    # cannot be read; the run neither passes nor ends quietly until someone looks.
    NEEDS_ATTENTION = "needs_attention", "Needs attention"


FINISHED_RUN_STATUSES = (RunStatus.PASSED, RunStatus.FAILED, RunStatus.ERROR)


class ValidationRun(models.Model):
    KIND_BACKTEST = "backtest"
    KIND_SCHEDULED = "scheduled"
    KIND_CHOICES: ClassVar = [
        (KIND_BACKTEST, "Out-of-sample backtest"),
        (KIND_SCHEDULED, "Scheduled re-validation"),
    ]

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="validation_runs"
    )
    kind = models.CharField(max_length=20, choices=KIND_CHOICES, default=KIND_BACKTEST)
    strategy = models.CharField(max_length=50, default="ml_basic")
    status = models.CharField(
        max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    data_content_hash = models.CharField(max_length=64, blank=True)
    in_sample = models.BooleanField(default=False)
    # Lower costs or a window other than the policy's: shown, counted, never moves a version.
    exploratory = models.BooleanField(default=False)
    exploratory_reasons = models.JSONField(default=list, blank=True)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    benchmark_metrics = models.JSONField(default=dict, blank=True)
    gate_results = models.JSONField(default=list, blank=True)
    drift = models.JSONField(default=dict, blank=True)
    passed = models.BooleanField(null=True)
    report_dir = models.CharField(max_length=500, blank=True)
    plot_file = models.CharField(max_length=200, blank=True)
    task_id = models.CharField(max_length=255, blank=True, db_index=True)
    scheduled_slot = models.CharField(  # noqa: DJ001 -- NULL keeps unscheduled runs out of the unique slot
        max_length=40,
        null=True,
        blank=True,
        help_text="The beat slot (e.g. 2026-11-26) this scheduled run covers.",
    )
    error = models.TextField(blank=True)
    # The policy the run was judged under (its row, and that row's content hash).
    policy = models.ForeignKey(
        "ValidationPolicy", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    policy_hash = models.CharField(max_length=64, blank=True)

    objects = NoDeleteQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["model_version", "scheduled_slot"],
                condition=Q(scheduled_slot__isnull=False),
                name="one_scheduled_run_per_slot",
            )
        ]
        triggers: ClassVar = [
            lifecycle_column_guard("validation_status_guard", "status"),
            born_in_guard("validation_born_queued", "status", ("queued",)),
        ]

    def __str__(self) -> str:
        return f"validation #{self.pk} of {self.model_version} ({self.status})"

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise DeletionRefused("Validation runs are never deleted.")


class PaperTradingRun(models.Model):
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="paper_runs"
    )
    status = models.CharField(
        max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    # "replay": a quick pre-check on stored held-out bars, in-process. "forward": the engine
    # on the staging target paper trading live candles for the policy's period
    # (models_registry/services/forward.py). Only a forward run is paper trading.
    MODE_REPLAY = "replay"
    MODE_FORWARD = "forward"
    mode = models.CharField(max_length=20, default=MODE_REPLAY)
    config = models.JSONField(default=dict, blank=True)
    # Forward runs: the staging target the engine runs on, and the deployment that put it there.
    target = models.ForeignKey(
        "DeploymentTarget", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    deployment = models.ForeignKey(
        "Deployment", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Below the policy's costs, or from a process whose settings disagree with the policy:
    # recorded, never moves the version (models_registry/services/paper.py).
    exploratory = models.BooleanField(default=False)
    exploratory_reasons = models.JSONField(default=list, blank=True)
    data_content_hash = models.CharField(max_length=64, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    bars = models.PositiveIntegerField(default=0)
    trades = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    divergence = models.JSONField(default=dict, blank=True)
    gate_results = models.JSONField(default=list, blank=True)
    passed = models.BooleanField(null=True)
    report_dir = models.CharField(max_length=500, blank=True)
    plot_file = models.CharField(max_length=200, blank=True)
    task_id = models.CharField(max_length=255, blank=True, db_index=True)
    error = models.TextField(blank=True)
    # The policy the run was judged under (its row, and that row's content hash).
    policy = models.ForeignKey(
        "ValidationPolicy", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    policy_hash = models.CharField(max_length=64, blank=True)

    objects = NoDeleteQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        # A replay pre-check, or paper trading forward on staging (the field ``mode``).
        verbose_name = "paper run (replay or forward)"
        triggers: ClassVar = [
            lifecycle_column_guard("paper_status_guard", "status"),
            born_in_guard("paper_born_queued", "status", ("queued",)),
        ]

    def __str__(self) -> str:
        kind = "forward paper run" if self.mode == self.MODE_FORWARD else "replay"
        return f"{kind} #{self.pk} of {self.model_version} ({self.status})"

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise DeletionRefused("Paper trading runs are never deleted.")


class Environment(models.TextChoices):
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"


class DeploymentTarget(models.Model):
    name = models.CharField(max_length=100, unique=True)
    environment = models.CharField(max_length=20, choices=Environment.choices)
    is_local = models.BooleanField(
        default=False, help_text="Same steps on this machine through a local context, no SSH."
    )
    ssh_user = models.CharField(max_length=100, default="deploy")
    ssh_port = models.PositiveIntegerField(default=22)
    ssh_key_path = models.CharField(max_length=500, blank=True)
    known_hosts = models.TextField(
        blank=True, help_text="Pinned host keys (known_hosts format). Unknown keys are refused."
    )
    install_root = models.CharField(max_length=300, default="/opt/ai-trading-bot")
    model_dir = models.CharField(max_length=200, default="src/ml")
    upload_dir = models.CharField(max_length=300, default="/tmp/ai-trading-bot-staging")  # noqa: S108 -- the guide's upload folder on the host
    service_name = models.CharField(max_length=100, default="ai-trading-bot")
    restart_command = models.CharField(max_length=500, default="sudo systemctl restart {service}")
    # Stops a staged engine whose version was replaced, rejected or failed its forward run.
    stop_command = models.CharField(max_length=500, default="sudo systemctl stop {service}")
    log_command = models.CharField(
        max_length=500, default="sudo journalctl -u {service} --since '{since}' --no-pager"
    )
    status_file = models.CharField(
        max_length=300, blank=True, help_text="Default: {root}/var/status.json"
    )
    check_command = models.CharField(max_length=500, blank=True)
    health_timeout_seconds = models.PositiveIntegerField(default=60)
    command_timeout_seconds = models.PositiveIntegerField(default=60)
    keep_versions = models.PositiveIntegerField(default=3)
    parallelism = models.PositiveIntegerField(default=4)
    allowed_hours = models.CharField(
        max_length=200,
        blank=True,
        help_text=(
            "Deployment windows in UTC, e.g. 'mon-fri 02:00-05:00; sat,sun 00:00-24:00'. "
            "Empty: any time."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = NoDeleteQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["environment", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.environment})"


class DeploymentHost(models.Model):
    target = models.ForeignKey(DeploymentTarget, on_delete=models.PROTECT, related_name="hosts")
    hostname = models.CharField(max_length=255)
    port = models.PositiveIntegerField(null=True, blank=True, help_text="Default: the target's")
    enabled = models.BooleanField(default=True)
    install_root = models.CharField(
        max_length=300, blank=True, help_text="Overrides the target's install root on this host."
    )
    upload_dir = models.CharField(
        max_length=300, blank=True, help_text="Overrides the target's upload folder on this host."
    )
    # "address:effective port:effective install root", normalised: the database itself
    # then holds that a host belongs to one target only, whatever code path saves it.
    identity = models.CharField(max_length=600, editable=False)

    class Meta:
        ordering: ClassVar = ["id"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["target", "hostname", "port"], name="unique_host"),
            models.UniqueConstraint(fields=["identity"], name="host_belongs_to_one_target"),
        ]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.port or self.target.ssh_port}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.identity = host_identity_key(self)
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "identity"}
        super().save(*args, **kwargs)


def host_identity_key(host: DeploymentHost) -> str:
    """Machine, port and install root as a deploy to this host would resolve them,
    one spelling each (deployment/identity.py): what the host itself reports is
    checked again at every preflight."""
    target = host.target
    return spelled_identity_key(
        address=host.hostname,
        port=host.port or target.ssh_port,
        root=host.install_root or target.install_root,
        local=target.is_local,
    )


def spelled_identity_key(*, address: str, port: int, root: str, local: bool) -> str:
    if local:
        # A local target runs on this machine whatever its hosts are called: its folder
        # is compared by real path, so a symlink or `..` is the same folder.
        return f"{LOOPBACK}:local:{local_real_root(root)}"
    return f"{canonical_address(address)}:{port}:{canonical_root(root)}"


class DeploymentStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled for the next window"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed (host untouched)"
    ROLLED_BACK = "rolled_back", "Rolled back"
    NEEDS_ATTENTION = "needs_attention", "Needs attention (host may not be serving)"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_DEPLOYMENT_STATUSES = (
    DeploymentStatus.SUCCEEDED,
    DeploymentStatus.FAILED,
    DeploymentStatus.ROLLED_BACK,
    DeploymentStatus.NEEDS_ATTENTION,
    DeploymentStatus.CANCELLED,
)


ACTIVE_DEPLOYMENT_STATUSES = (DeploymentStatus.QUEUED, DeploymentStatus.RUNNING)


class Deployment(models.Model):
    KIND_DEPLOY = "deploy"
    KIND_ROLLBACK = "rollback"

    target = models.ForeignKey(
        DeploymentTarget, on_delete=models.PROTECT, related_name="deployments"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="deployments"
    )
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approval = models.ForeignKey(
        "Approval", null=True, blank=True, on_delete=models.PROTECT, related_name="deployments"
    )
    kind = models.CharField(
        max_length=20,
        choices=[(KIND_DEPLOY, "Deploy"), (KIND_ROLLBACK, "Rollback")],
        default=KIND_DEPLOY,
    )
    status = models.CharField(
        max_length=20,
        choices=DeploymentStatus.choices,
        default=DeploymentStatus.QUEUED,
        db_index=True,
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    forced_reason = models.TextField(blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    steps = models.JSONField(default=list, blank=True)
    log_tail = models.TextField(blank=True)
    compatibility = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=255, blank=True)

    objects = NoDeleteQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        indexes: ClassVar = [
            # "What does this target serve now": the latest successful deployment per target
            # (fleet home, version page, decision pages, the deployment list's "ran until").
            models.Index(
                fields=["target", "status", "finished_at", "id"], name="deployment_served_idx"
            )
        ]
        constraints: ClassVar = [
            # One deployment at a time per target, held by the database itself.
            models.UniqueConstraint(
                fields=["target"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_deployment_per_target",
            )
        ]
        triggers: ClassVar = [
            lifecycle_column_guard("deployment_status_guard", "status"),
            born_in_guard("deployment_born_queued", "status", ("queued", "scheduled")),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}: {self.model_version} to {self.target.name} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise DeletionRefused("Deployments are never deleted.")


class Approval(models.Model):
    """A recorded human decision. Final: a change of mind is a new row beside it."""

    DECISION_APPROVED = "approved"
    DECISION_REJECTED = "rejected"

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="approvals"
    )
    decision = models.CharField(
        max_length=20, choices=[(DECISION_APPROVED, "Approved"), (DECISION_REJECTED, "Rejected")]
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(auto_now_add=True)
    comment = models.TextField()
    sha256 = models.CharField(max_length=64, help_text="The ONNX sha256 this decision covers.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects = NoDeleteQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-decided_at", "-id"]

    def __str__(self) -> str:
        return f"{self.decision} {self.model_version} by {self.decided_by}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise RegistryError("An approval decision is final: record a new decision instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise DeletionRefused("Approval decisions are never deleted.")

    @property
    def is_suspended(self) -> bool:
        return self.suspensions.exists()


class ApprovalSuspension(models.Model):
    """An approval taken out of force (e.g. by a degraded scheduled validation)."""

    approval = models.ForeignKey(Approval, on_delete=models.PROTECT, related_name="suspensions")
    created_at = models.DateTimeField(auto_now_add=True)
    reason = models.TextField()
    validation_run = models.ForeignKey(
        ValidationRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects = NoDeleteQuerySet.as_manager()

    def __str__(self) -> str:
        return f"suspension of {self.approval}"


_AppendOnly = TypeVar("_AppendOnly", bound="AppendOnlyModel")


class AppendOnlyQuerySet(models.QuerySet[_AppendOnly]):
    """Refuses bulk update and delete; the model's ``append_only_label`` names it."""

    def update(self, **kwargs: Any) -> int:
        raise RegistryError(f"{self.model.append_only_label} are append-only: no update.")

    def delete(self) -> Any:
        raise DeletionRefused(f"{self.model.append_only_label} are append-only: no delete.")


class AppendOnlyModel(models.Model):
    """A row written once and kept: no save of an existing row, no delete (ORM side; the
    database refuses UPDATE and DELETE too, by trigger, see migrations 0003, 0006, 0010)."""

    append_only_label: ClassVar[str] = "Records"

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise RegistryError(f"{self.append_only_label} are append-only: no update.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise DeletionRefused(f"{self.append_only_label} are append-only: no delete.")


class AuditEvent(AppendOnlyModel):
    """An append-only, hash-chained record of something that happened.

    ``row_hash`` covers a canonical JSON form of the row's content and the
    previous row's hash, so an edit or deletion anywhere breaks the chain at
    that row. ``prev_hash`` is unique: two writers cannot both extend the same
    tail, so the chain cannot fork.
    """

    event_time = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_repr = models.CharField(max_length=150, blank=True)
    # The catalogue (models_registry/events.py); the database checks it too (migration 0012).
    event_type = models.CharField(max_length=60, db_index=True, choices=EventType.choices)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=60, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, unique=True)
    row_hash = models.CharField(max_length=64, unique=True)
    # The exact bytes row_hash covers (services.audit.row_payload), written with the row so
    # that verifying hashes stored bytes instead of rebuilding JSON per row
    # (services/audit_payload.py). Redundant by design: verification checks it against the
    # columns and the hash, so a tampered payload is found like a tampered column. NULL only
    # for rows written around the service; those are verified from their columns.
    payload = models.BinaryField(null=True, editable=False)

    append_only_label = "Audit events"
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-id"]
        indexes: ClassVar = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.event_type} {self.object_repr}"


class TargetChange(models.Model):
    """A proposed change to a production target or its hosts: applied only once a second
    person with the deployer permission confirms it (the same four-eyes rule as approvals)."""

    STATUS_PENDING = "pending"
    STATUS_APPLIED = "applied"

    target = models.ForeignKey(DeploymentTarget, on_delete=models.PROTECT, related_name="changes")
    host = models.ForeignKey(
        DeploymentHost, null=True, blank=True, on_delete=models.PROTECT, related_name="changes"
    )
    kind = models.CharField(
        max_length=20, choices=[("target", "Target settings"), ("host", "Host")]
    )
    values = models.JSONField(help_text="Field -> new value.")
    status = models.CharField(
        max_length=20,
        choices=[(STATUS_PENDING, "Pending confirmation"), (STATUS_APPLIED, "Applied")],
        default=STATUS_PENDING,
    )
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    proposed_at = models.DateTimeField(auto_now_add=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)

    objects = NoDeleteQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-proposed_at", "-id"]
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(confirmed_by__isnull=True) | ~Q(confirmed_by=models.F("proposed_by")),
                name="target_change_confirmed_by_a_second_person",
            )
        ]
        triggers: ClassVar = [
            lifecycle_column_guard("target_change_status_guard", "status"),
            born_in_guard("target_change_born_pending", "status", ("pending",)),
        ]

    def __str__(self) -> str:
        return f"change #{self.pk} of {self.target.name} ({self.status})"

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise DeletionRefused("Target changes are never deleted.")


class ValidationPolicy(AppendOnlyModel):
    """One version of the validation policy: costs, windows and every stage's gates, as data.

    Append-only and content-hashed (sha256 of canonical JSON). A row is a proposal; it is in
    force from the moment a second person confirms it (``PolicyConfirmation``), until a later
    confirmed row of the same scope replaces it. ``scope`` is a model name, or "" for the
    default every model without its own policy is judged under. Written only by
    ``models_registry.services.policies``.
    """

    scope = models.CharField(
        max_length=100, blank=True, help_text="A model name, or empty: the default policy."
    )
    number = models.PositiveIntegerField(help_text="Version of the policy within its scope.")
    label = models.CharField(max_length=100, help_text='A name people use, e.g. "default", "demo".')
    content = models.JSONField()
    content_hash = models.CharField(max_length=64)
    base = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The policy in force for this scope when this one was proposed.",
    )
    seeded_from = models.CharField(
        max_length=40,
        blank=True,
        help_text="Set only on the first policy: where the seed came from.",
    )
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    proposed_at = models.DateTimeField(auto_now_add=True)
    comment = models.TextField(blank=True)

    append_only_label = "Validation policies"
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["scope", "-number"]
        verbose_name_plural = "validation policies"
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["scope", "number"], name="one_policy_number_per_scope")
        ]
        triggers: ClassVar = [
            pgtrigger.Protect(
                name="validation_policy_append_only",
                operation=pgtrigger.Update | pgtrigger.Delete,
            )
        ]
        permissions: ClassVar = [
            ("propose_validationpolicy", "Can propose a validation policy change"),
            ("confirm_validationpolicy", "Can confirm another person's policy proposal"),
        ]

    def __str__(self) -> str:
        scope = self.scope or "default"
        return f"policy {self.label} v{self.number} ({scope}, {self.content_hash[:12]})"


class PolicyConfirmation(AppendOnlyModel):
    """The second person's confirmation that puts a proposed policy in force (append-only)."""

    policy = models.OneToOneField(
        ValidationPolicy, on_delete=models.PROTECT, related_name="confirmation"
    )
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(auto_now_add=True)

    append_only_label = "Policy confirmations"
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-id"]
        triggers: ClassVar = [
            pgtrigger.Protect(
                name="policy_confirmation_append_only",
                operation=pgtrigger.Update | pgtrigger.Delete,
            )
        ]

    def __str__(self) -> str:
        return f"confirmation of {self.policy}"


class ModelTrial(AppendOnlyModel):
    """One attempt at a model name on a span of data: the count the deflated Sharpe ratio needs.

    A validation run (exploratory or not) and each training or search trial is one row,
    written in the same transaction as what it records. Append-only, like the audit trail:
    a trial nobody can forget is the point (Bailey & López de Prado 2014: the number of
    trials is what turns a lucky maximum into an honest probability).
    """

    KIND_VALIDATION = "validation"
    KIND_EXPLORATORY = "exploratory_validation"
    KIND_SCHEDULED = "scheduled_validation"
    KIND_TRAINING = "training"
    KIND_SEARCH = "search"
    KIND_CHOICES: ClassVar = [
        (KIND_VALIDATION, "Policy validation run"),
        (KIND_EXPLORATORY, "Exploratory validation run"),
        (KIND_SCHEDULED, "Scheduled re-validation"),
        (KIND_TRAINING, "Training"),
        (KIND_SEARCH, "Search trial"),
    ]

    model_name = models.CharField(max_length=100, db_index=True)
    kind = models.CharField(max_length=30, choices=KIND_CHOICES)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="trials"
    )
    validation_run = models.OneToOneField(
        ValidationRun, null=True, blank=True, on_delete=models.PROTECT, related_name="trial"
    )
    window_start = models.DateTimeField(help_text="First bar the attempt read or was judged on.")
    window_end = models.DateTimeField(help_text="Last bar the attempt read or was judged on.")
    sharpe_per_bar = models.FloatField(
        null=True, blank=True, help_text="Per-bar Sharpe ratio, where the attempt measured one."
    )
    detail = models.JSONField(default=dict, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    append_only_label = "Model trials"
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-id"]
        indexes: ClassVar = [models.Index(fields=["model_name", "window_start", "window_end"])]
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(window_end__gte=F("window_start")), name="trial_window_is_ordered"
            )
        ]
        triggers: ClassVar = [
            pgtrigger.Protect(
                name="model_trial_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self) -> str:
        return f"trial #{self.pk} of {self.model_name} ({self.kind})"


# --- what hosts really are, and who may touch them now (issue 26) -------------------


class ObservedHost(models.Model):
    """What a host of a target said it is at its last preflight (deployment/identity.py).

    One row per (target, host label). Another enabled host, of any target, that
    reports the same host id, or the same host key and real install root, is the
    same machine and folder: its deploys are refused, naming both targets.
    """

    target = models.ForeignKey(DeploymentTarget, on_delete=models.PROTECT, related_name="+")
    deployment_host = models.ForeignKey(
        DeploymentHost, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    label = models.CharField(max_length=300)
    fingerprint = models.CharField(max_length=200)
    real_root = models.CharField(max_length=1000)
    host_id = models.CharField(max_length=100, blank=True)
    root_key = models.CharField(max_length=80, db_index=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    objects = NoDeleteQuerySet.as_manager()

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["target", "label"], name="observed_host_per_label")
        ]

    def __str__(self) -> str:
        return f"{self.label} of {self.target.name}: {self.fingerprint} {self.real_root}"


class HostLock(models.Model):
    """A machine (or install root) being deployed to, and by which deployment.

    The row is the lock: its key is unique, so two deploys that reach one machine
    cannot both hold it, whatever targets they came through. It outlives a dropped
    database connection (an advisory lock would not); it is free again once its
    deployment is finished (a killed worker's is, after reconcile).
    """

    key = models.CharField(max_length=80, unique=True)
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, related_name="+")
    label = models.CharField(max_length=300)
    acquired_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.key} held by deployment #{self.deployment_id}"


class TargetAttention(models.Model):
    """A target someone must look at before anything else is deployed there: a deploy
    that ended ``needs_attention``, or a scheduled host check that found a host not
    serving the registry's version. Closed only by a deployer's acknowledgement, after
    a host check shows the target consistent."""

    KIND_DEPLOYMENT = "deployment"
    KIND_HOST_MISMATCH = "host_mismatch"

    target = models.ForeignKey(DeploymentTarget, on_delete=models.PROTECT, related_name="+")
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=30)
    reason = models.TextField()
    raised_at = models.DateTimeField(auto_now_add=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)

    objects = NoDeleteQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} on {self.target.name}: {self.reason[:80]}"


class ApiToken(models.Model):
    """A user's token for the HTTP API (issue 30): it acts as that user, with that user's roles.

    Only the SHA-256 of the secret is stored; the secret is shown once, when the token is
    created in the admin. A token is never deleted: revoking it stamps ``revoked_at``, and
    both acts are audit events (``models_registry.services.api_tokens``).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'ci-training-job'.")
    prefix = models.CharField(
        max_length=16, help_text="The secret's first characters, to recognise it in logs."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = NoDeleteQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"API token {self.prefix}… ({self.name}) of {self.user}"

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise DeletionRefused("API tokens are never deleted: revoke them.")


class IdempotencyRecord(AppendOnlyModel):
    """The response to a write sent with an ``Idempotency-Key``, kept to answer a repeat.

    One row per (user, key): the same key again with the same request gets the stored
    response; with another request it is refused (models_registry/api/idempotency.py).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    append_only_label = "Idempotency records"
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-id"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["user", "key"], name="one_response_per_idempotency_key")
        ]
        triggers: ClassVar = [
            pgtrigger.Protect(
                name="idempotency_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} with key {self.key[:20]}"
