"""One concern: the ModelAdmin declarations; actions, pages and views are sibling modules.

Django admin: the product's face for staff (train, validate, approve, deploy, roll back)
and for auditors (deployment history and the audit trail, read-only).

Admin actions are thin: each declares its permission, checks each selected
object's state again, calls a service or queues a task, and reports per object.
Nothing here writes a state; registry records cannot be deleted by anyone.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from models_registry import exports, formatting
from models_registry.admin import actions as admin_actions
from models_registry.admin import compare as admin_compare
from models_registry.admin import policy as admin_policy
from models_registry.admin import tasks as admin_tasks
from models_registry.admin.cockpit import staff_user
from models_registry.formatting import key_value_table as _kv_table
from models_registry.models import (
    Approval,
    ApprovalSuspension,
    AuditEvent,
    Deployment,
    DeploymentHost,
    DeploymentStatus,
    DeploymentTarget,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    ValidationRun,
)

STATE_COLOURS: dict[str, str] = {
    ModelState.TRAINED: "#6c757d",
    ModelState.VALIDATED: "#0d6efd",
    ModelState.PAPER_TESTED: "#6610f2",
    ModelState.STAGED: "#fd7e14",
    ModelState.APPROVED: "#198754",
    ModelState.IN_PRODUCTION: "#146c43",
    ModelState.RETIRED: "#adb5bd",
    ModelState.REJECTED: "#dc3545",
}


class MalformedIdIs404:
    """``.../modelversion/abc/change/`` is a 404: an id that cannot be a key names nothing.

    Django redirects to the admin home for such an id; a page for one record is a 404 when
    the record cannot exist, with DEBUG on or off.
    """

    model: Any

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        field = (
            self.model._meta.pk if from_field is None else self.model._meta.get_field(from_field)
        )
        try:
            field.to_python(object_id)
        except (ValidationError, ValueError, TypeError):
            raise Http404(
                f"no {self.model._meta.verbose_name} with id {object_id[:40]!r}"
            ) from None
        return super().get_object(request, object_id, from_field)  # type: ignore[misc]


class ReadOnlyAdmin(MalformedIdIs404, admin.ModelAdmin):
    """Records that only services write: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


def state_badge(state: str, label: str) -> str:
    return format_html(
        '<span class="state-badge" data-state="{}" style="background:{};color:#fff;'
        'padding:2px 8px;border-radius:10px;white-space:nowrap">{}</span>',
        state,
        STATE_COLOURS.get(state, "#6c757d"),
        label,
    )


def artifact_image(url: str | None, alt: str) -> str:
    if not url:
        return "—"
    return format_html('<img src="{}" alt="{}" style="max-width:900px;width:100%">', url, alt)


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = (
        "name", "version", "symbol", "state_display", "health", "created_at", "created_by",
        "short_sha",
    )  # fmt: skip
    list_filter = (
        "symbol",
        "state",
        "kind",
        "health",
        "source",
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("name", "symbol", "onnx_sha256")
    list_select_related = ("created_by",)
    # No date_hierarchy: it runs a DISTINCT over every row's date on each page load, which
    # grows with the table; the sidebar's date filter does the same job from fixed queries.
    list_per_page = 50
    show_full_result_count = False
    ordering = ("-created_at", "-id")
    change_form_template = "admin/models_registry/modelversion/change_form.html"
    actions = (
        admin_actions.validate_versions,
        admin_actions.paper_trade_versions,
        admin_actions.stage_versions,
        admin_actions.approve_versions,
        admin_actions.reject_versions,
        admin_actions.deploy_versions,
        admin_actions.rollback_production,
        admin_compare.compare_versions,
    )
    fieldsets = (
        (None, {"fields": ("name", "version", "symbol", "interval", "kind", "state", "health")}),
        ("Provenance", {"fields": ("source", "created_by", "created_at", "origin_key")}),
        (
            "Artifacts",
            {
                "fields": (
                    "artifact_dir",
                    "onnx_file",
                    "onnx_sha256",
                    "metadata_file",
                    "metadata_sha256",
                    "plot_file",
                    "plot_sha256",
                )
            },
        ),
        (
            "Data lineage",
            {
                "fields": (
                    "data_start",
                    "data_end",
                    "data_content_hash",
                    "fit_start",
                    "fit_end",
                    "selection_start",
                    "selection_end",
                    "first_unseen_at",
                    "out_of_sample_from",
                    "allow_short_history",
                )
            },
        ),
        ("Approval", {"fields": ("approval_requested_by", "approval_requested_at")}),
        ("Training plot", {"fields": ("training_plot",)}),
        ("Metrics", {"fields": ("metrics_table",)}),
    )
    readonly_fields = ("training_plot", "metrics_table")

    @admin.display(description="state", ordering="state")
    def state_display(self, obj: ModelVersion) -> str:
        return state_badge(obj.state, obj.get_state_display())

    @admin.display(description="sha256")
    def short_sha(self, obj: ModelVersion) -> str:
        return obj.onnx_sha256[:12]

    @admin.display(description="training plot")
    def training_plot(self, obj: ModelVersion) -> str:
        if not obj.plot_file:
            return "—"
        url = reverse("admin:models_registry_artifact", args=["modelversion", obj.pk, "plot"])
        return artifact_image(url, f"training plot of {obj}")

    @admin.display(description="metrics")
    def metrics_table(self, obj: ModelVersion) -> str:
        return key_value_table(obj.metrics)

    def has_train_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("models_registry.train_model")

    def has_validate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("models_registry.validate_modelversion")

    def has_papertrade_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("models_registry.papertrade_modelversion")

    def has_stage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("models_registry.stage_modelversion")

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("models_registry.approve_modelversion")

    def has_reject_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("models_registry.reject_modelversion")

    def has_deploy_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("models_registry.deploy_modelversion")

    def has_rollback_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("models_registry.rollback_modelversion")

    def refuse_unheld_action(self, request: HttpRequest) -> HttpResponse | None:
        """A POST for a workflow action this user does not hold (a forged form): refuse, record."""
        requested = request.POST.get("action", "")
        known = {getattr(a, "__name__", a) for a in self.actions}
        if request.method != "POST" or requested not in known:
            return None
        if requested in self.get_actions(request):
            return None
        from models_registry.services.refusals import admin_action_refuse

        admin_action_refuse(
            actor=staff_user(request),
            action=requested,
            selected=request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        )
        self.message_user(
            request, f"You do not have permission to {requested.replace('_', ' ')}.", level=40
        )
        return HttpResponseRedirect(request.get_full_path())

    def get_urls(self) -> list[Any]:
        from django.urls import path

        from models_registry.admin.health import health_urls

        extra = [
            *health_urls(self.admin_site),
            path(
                "artifact/<str:kind>/<int:pk>/<str:which>/",
                self.admin_site.admin_view(admin_actions.artifact_view),
                name="models_registry_artifact",
            ),
            path(
                "<int:pk>/action/<str:action>/",
                self.admin_site.admin_view(
                    lambda request, pk, action: admin_actions.version_action_view(
                        self, request, pk, action
                    )
                ),
                name="models_registry_version_action",
            ),
            path(
                "<int:pk>/jobs.json",
                self.admin_site.admin_view(admin_actions.version_jobs_view),
                name="models_registry_version_jobs",
            ),
            path(
                "compare/",
                self.admin_site.admin_view(admin_compare.compare_view),
                name="models_registry_compare",
            ),
            path(
                "train/",
                self.admin_site.admin_view(admin_actions.train_view),
                name="models_registry_train",
            ),
            path(
                "register/",
                self.admin_site.admin_view(admin_actions.register_view),
                name="models_registry_register",
            ),
        ]
        return extra + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            **admin_actions.version_page_context(object_id, request.user),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        """Django's HISTORY button: the version's audit trail (the admin's own log is empty,
        since nothing is changed through admin forms)."""
        url = reverse("admin:models_registry_auditevent_changelist")
        return HttpResponseRedirect(f"{url}?object_type=ModelVersion&object_id={int(object_id)}")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        """On the list page, offer only actions that apply to a state in the current filter.

        A POST keeps every held action: the services re-check each version anyway, and a
        state can change between showing the list and submitting it.
        """
        actions = super().get_actions(request)
        if request.method != "GET":
            return actions
        from models_registry.admin.cockpit import RULES_BY_NAME, actions_for_states

        states = self._states_in_view(request)
        applicable = actions_for_states(staff_user(request), states)
        return {
            name: action
            for name, action in actions.items()
            if name not in RULES_BY_NAME or name in applicable
        }

    def _states_in_view(self, request: HttpRequest) -> set[str]:
        chosen = request.GET.get("state__exact")
        if chosen:
            return {chosen}
        # get_actions runs several times per page: ask the database once per request.
        cached = getattr(request, "_registry_states", None)
        if cached is None:
            # order_by(): the default ordering would make DISTINCT run over (state,
            # created_at, id), i.e. return every row (10,000 at scale) instead of 8 states.
            cached = set(ModelVersion.objects.order_by().values_list("state", flat=True).distinct())
            request._registry_states = cached  # type: ignore[attr-defined]
        return cached

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        refused = self.refuse_unheld_action(request)
        if refused is not None:
            return refused
        extra_context = {
            **(extra_context or {}),
            "training_jobs": admin_actions.recent_training_jobs(),
            "can_train": request.user.has_perm("models_registry.train_model"),
            "can_register": request.user.has_perm("models_registry.register_modelversion"),
        }
        return super().changelist_view(request, extra_context)


def key_value_table(data: dict[str, Any] | None) -> str:
    return _kv_table(data)


def json_table(field: str, description: str) -> Any:
    """A read-only field showing a JSON column as tables: no raw JSON on a page a person reads.

    Declare ``x_table = json_table("x", "x")``, list it in readonly_fields and put the
    column itself in ``exclude`` (Django would print it as JSON text).
    """

    @admin.display(description=description)
    def show(self: Any, obj: Any) -> str:
        return _kv_table(getattr(obj, field))

    show.__name__ = f"{field}_table"
    return show


@admin.register(ValidationRun)
class ValidationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "model_version", "kind", "strategy", "status", "passed", "in_sample", "window_start",
        "window_end", "created_at", "task_link",
    )  # fmt: skip
    list_filter = (
        "kind",
        "status",
        "passed",
        "in_sample",
        ("created_at", admin.DateFieldListFilter),
    )
    list_select_related = ("model_version",)
    search_fields = ("model_version__name", "task_id")
    show_full_result_count = False
    readonly_fields = (
        "report_plot", "metrics_table", "gates_table", "task_link", "config_table",
        "benchmark_table", "drift_table", "exploratory_reasons_table",
    )  # fmt: skip
    exclude = (
        "config", "metrics", "benchmark_metrics", "gate_results", "drift", "exploratory_reasons",
    )  # fmt: skip
    config_table = json_table("config", "configuration")
    benchmark_table = json_table("benchmark_metrics", "baselines")
    drift_table = json_table("drift", "drift")
    exploratory_reasons_table = json_table("exploratory_reasons", "exploratory because")

    @admin.display(description="equity curve")
    def report_plot(self, obj: ValidationRun) -> str:
        if not obj.plot_file:
            return "—"
        return artifact_image(
            reverse("admin:models_registry_artifact", args=["validationrun", obj.pk, "plot"]),
            f"equity curve of run {obj.pk}",
        )

    @admin.display(description="metrics")
    def metrics_table(self, obj: ValidationRun) -> str:
        return key_value_table(obj.metrics)

    @admin.display(description="gates")
    def gates_table(self, obj: ValidationRun) -> str:
        return gates_html(obj.gate_results)

    @admin.display(description="task")
    def task_link(self, obj: ValidationRun) -> str:
        return task_result_link(obj.task_id)


def gates_html(gate_results: list[dict[str, Any]]) -> str:
    if not gate_results:
        return "—"
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                g.get("name"),
                "pass" if g.get("passed") else "FAIL",
                formatting.gate_value(g.get("name"), g.get("value")),
                formatting.gate_value(g.get("name"), g.get("threshold")),
            )
            for g in gate_results
        ),
    )
    return format_html(
        '<table class="gates"><tr><th>gate</th><th>result</th><th>value</th>'
        "<th>threshold</th></tr>{}</table>",
        rows,
    )


def task_result_link(task_id: str) -> str:
    if not task_id:
        return "—"
    url = reverse("admin:django_celery_results_taskresult_changelist") + f"?task_id={task_id}"
    return format_html('<a href="{}">{}</a>', url, task_id[:8])


@admin.register(PaperTradingRun)
class PaperTradingRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "model_version", "mode", "target", "status", "passed", "period_start",
        "period_end", "bars", "trades", "created_at",
    )  # fmt: skip
    list_filter = ("status", "passed", "mode")
    list_select_related = ("model_version", "target")
    show_full_result_count = False
    readonly_fields = ("report_plot", "metrics_table", "gates_table", "config_table")
    exclude = ("config", "metrics", "divergence", "gate_results")
    config_table = json_table("config", "configuration")

    @admin.display(description="equity curve")
    def report_plot(self, obj: PaperTradingRun) -> str:
        if not obj.plot_file:
            return "—"
        return artifact_image(
            reverse("admin:models_registry_artifact", args=["papertradingrun", obj.pk, "plot"]),
            f"paper run {obj.pk}",
        )

    @admin.display(description="metrics")
    def metrics_table(self, obj: PaperTradingRun) -> str:
        return key_value_table(
            {**obj.metrics, **{f"divergence_{k}": v for k, v in obj.divergence.items()}}
        )

    @admin.display(description="gates")
    def gates_table(self, obj: PaperTradingRun) -> str:
        return gates_html(obj.gate_results)


class DeploymentHostInline(admin.TabularInline):
    model = DeploymentHost
    extra = 0

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DeploymentTarget)
class DeploymentTargetAdmin(MalformedIdIs404, admin.ModelAdmin):
    list_display = ("name", "environment", "is_local", "host_list", "service_name", "allowed_hours")
    list_filter = ("environment", "is_local")
    inlines = (DeploymentHostInline,)
    actions = (admin_actions.acknowledge_attention,)

    def has_deploy_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("models_registry.deploy_modelversion")

    @admin.display(description="hosts")
    def host_list(self, obj: DeploymentTarget) -> str:
        return ", ".join(str(h) for h in obj.hosts.all()) or ("local" if obj.is_local else "—")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("hosts")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        from django.urls import path

        view = self.admin_site.admin_view(self.check_hosts_view)
        return [
            path(
                "<int:pk>/check-hosts/", view, name="models_registry_deploymenttarget_check_hosts"
            ),
            *super().get_urls(),
        ]

    def check_hosts_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The fleet home's "Check hosts": queue a host read; its result is a host_check event."""
        from django.contrib import messages

        from models_registry.tasks.hosts import check_target_hosts

        if request.method != "POST":
            raise Http404("Check hosts is a button (POST).")
        if not request.user.has_perm("models_registry.deploy_modelversion"):
            raise PermissionDenied("Checking hosts needs the deployer role (deploy_modelversion).")
        target = DeploymentTarget.objects.filter(pk=pk).first()
        if target is None:
            raise Http404(f"no deployment target #{pk}")
        check_target_hosts.delay(target.pk, request.user.pk)
        messages.info(request, f"host check of {target.name} queued: reload in a moment.")
        return HttpResponseRedirect(reverse("admin:index"))

    # Targets are audited configuration: every save goes through services/targets.py.
    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        from models_registry.services import targets

        targets.target_save(target=obj, actor=staff_user(request))

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        from models_registry.services import targets

        for host in formset.save(commit=False):
            targets.host_save(host=host, actor=staff_user(request))
        formset.save_m2m()


class ExportAllMixin:
    """Export every row matching the list's filter and search (auditors only), streamed.

    Two ways in, one result: the links above the list, and the actions in its dropdown.
    The actions ignore which rows are ticked (Django asks for at least one tick before
    it runs an action): an auditor exporting a filtered list means all of it, not the
    page shown or the rows ticked on it.
    """

    export_name = ""
    actions: Any = ("export_csv", "export_jsonl")

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("models_registry.export_audit")

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra = dict(extra_context or {})
        if self.has_export_permission(request):
            extra["export_url_name"] = f"admin:models_registry_{self.export_name}_export"
        return super().changelist_view(request, extra)  # type: ignore[misc]

    def export_view(self, request: HttpRequest, fmt: str) -> StreamingHttpResponse:
        raise NotImplementedError

    @admin.action(
        description="Export every row matching the filter as CSV (ticks ignored)",
        permissions=["export"],
    )
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        return self.export_view(request, "csv")

    @admin.action(
        description="Export every row matching the filter as JSON Lines (ticks ignored)",
        permissions=["export"],
    )
    def export_jsonl(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        return self.export_view(request, "jsonl")


@admin.register(Deployment)
class DeploymentAdmin(ExportAllMixin, ReadOnlyAdmin):
    """Deployment history: which version ran where, from when, approved and deployed by whom."""

    list_display = (
        "id", "target", "model_version", "kind", "status_display", "in_service",
        "previous_version", "requested_by", "approved_by", "started_at", "duration",
    )  # fmt: skip
    list_filter = ("target", "status", "kind", ("created_at", admin.DateFieldListFilter))
    list_per_page = 50  # 13 columns: Django's 100 rows make rendering most of the page's time
    # No date_hierarchy: it runs a DISTINCT over every row's date on each page load, which
    # grows with the table; the sidebar's date filter does the same job from fixed queries.
    list_select_related = (
        "target", "model_version", "previous_version", "requested_by", "approval__decided_by",
    )  # fmt: skip
    search_fields = ("model_version__name", "sha256")
    show_full_result_count = False
    export_name = "deployment"
    change_list_template = "admin/models_registry/export_change_list.html"
    readonly_fields = ("steps_table", "log_tail_pre", "compatibility_table")
    exclude = ("steps", "log_tail", "compatibility")
    compatibility_table = json_table("compatibility", "compatibility checks")

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Deployment) -> str:
        # A host that may not be serving is the one row an operator must not overlook.
        if obj.status == DeploymentStatus.NEEDS_ATTENTION:
            return format_html(
                '<strong class="needs-attention" style="color:#ba2121">{}</strong>',
                obj.get_status_display(),
            )
        return obj.get_status_display()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # When the next successful deployment to the same target replaced this one: together
        # with finished_at, the period this version ran there. One subquery, not one per row.
        replaced_at = (
            Deployment.objects.filter(
                target=OuterRef("target"),
                status=DeploymentStatus.SUCCEEDED,
                finished_at__gt=OuterRef("finished_at"),
            )
            .order_by("finished_at")
            .values("finished_at")[:1]
        )
        return super().get_queryset(request).annotate(live_until=Subquery(replaced_at))

    @admin.display(description="ran on the target")
    def in_service(self, obj: Deployment) -> str:
        if obj.status != DeploymentStatus.SUCCEEDED or obj.finished_at is None:
            return "—"
        until = getattr(obj, "live_until", None)
        return f"{formatting.utc(obj.finished_at)} → {formatting.utc(until) if until else 'now'}"

    @admin.display(description="approved by")
    def approved_by(self, obj: Deployment) -> str:
        return obj.approval.decided_by.get_username() if obj.approval else "—"

    @admin.display(description="duration")
    def duration(self, obj: Deployment) -> str:
        seconds = obj.duration_seconds
        return f"{seconds:.1f} s" if seconds is not None else "—"

    @admin.display(description="steps")
    def steps_table(self, obj: Deployment) -> str:
        if not obj.steps:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            (
                (s.get("host", ""), s.get("name", ""), "ok" if s.get("ok") else "FAILED",
                 f"{s.get('seconds', 0):.2f} s", s.get("detail", ""))
                for s in obj.steps
            ),
        )  # fmt: skip
        return format_html(
            "<table><tr><th>host</th><th>step</th><th>result</th><th>time</th><th>detail</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="log tail")
    def log_tail_pre(self, obj: Deployment) -> str:
        return format_html("<pre>{}</pre>", obj.log_tail or "—")

    def get_urls(self) -> list[Any]:
        return [export_url(self, "deployment"), *super().get_urls()]

    def export_view(self, request: HttpRequest, fmt: str) -> StreamingHttpResponse:
        queryset = filtered_queryset(self, request).select_related(*self.list_select_related)
        return exports.stream_rows(
            "deployments", exports.DEPLOYMENT_COLUMNS, exports.deployment_rows(queryset), fmt
        )


def export_url(modeladmin: admin.ModelAdmin, model: str) -> Any:
    from django.urls import path

    def view(request: HttpRequest, fmt: str) -> HttpResponse:
        if not modeladmin.has_export_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied("Exporting needs the auditor role (export_audit).")
        if fmt not in exports.FORMATS:
            raise Http404("export as csv or jsonl")
        return modeladmin.export_view(request, fmt)  # type: ignore[attr-defined]

    return path(
        "export/<str:fmt>/",
        modeladmin.admin_site.admin_view(view),
        name=f"models_registry_{model}_export",
    )


def filtered_queryset(modeladmin: admin.ModelAdmin, request: HttpRequest) -> QuerySet:
    """Every row the list shows under the current filters and search, not one page of it."""
    changelist = modeladmin.get_changelist_instance(request)
    return changelist.get_queryset(request)


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "model_version",
        "decision",
        "decided_by",
        "decided_at",
        "requested_by",
        "short_sha",
    )
    list_filter = ("decision", ("decided_at", admin.DateFieldListFilter))
    list_select_related = ("model_version", "decided_by", "requested_by")
    show_full_result_count = False

    @admin.display(description="sha256")
    def short_sha(self, obj: Approval) -> str:
        return obj.sha256[:12]


@admin.register(ApprovalSuspension)
class ApprovalSuspensionAdmin(ReadOnlyAdmin):
    list_display = ("id", "approval", "created_at", "reason", "validation_run")
    list_select_related = (
        "approval__model_version",
        "approval__decided_by",
        "validation_run__model_version",
    )


@admin.register(AuditEvent)
class AuditEventAdmin(ExportAllMixin, ReadOnlyAdmin):
    export_name = "auditevent"
    list_display = (
        "id",
        "event_time",
        "event_type",
        "actor_repr",
        "object_type",
        "object_repr",
        "short_hash",
    )
    list_filter = ("event_type", "object_type", ("event_time", admin.DateFieldListFilter))
    # No date_hierarchy: it runs a DISTINCT over every row's date on each page load, which
    # grows with the table; the sidebar's date filter does the same job from fixed queries.
    list_per_page = 50
    search_fields = ("event_type", "actor_repr", "object_repr", "object_id")
    show_full_result_count = False
    change_list_template = "admin/models_registry/auditevent/change_list.html"
    # The hashed JSON is in the exports (canonical); the page shows it as a table.
    exclude = ("data",)
    readonly_fields = ("data_table",)
    data_table = json_table("data", "data")

    @admin.display(description="hash")
    def short_hash(self, obj: AuditEvent) -> str:
        return obj.row_hash[:12]

    def export_view(self, request: HttpRequest, fmt: str) -> StreamingHttpResponse:
        rows = exports.audit_rows(filtered_queryset(self, request))
        return exports.stream_rows("audit_events", exports.AUDIT_COLUMNS, rows, fmt)

    def get_urls(self) -> list[Any]:
        from django.urls import path

        from models_registry.admin.events import event_types_urls

        return [
            export_url(self, "auditevent"),
            *event_types_urls(self.admin_site),
            path(
                "verify/",
                self.admin_site.admin_view(self.verify_view),
                name="models_registry_auditevent_verify",
            ),
            *super().get_urls(),
        ]

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        from models_registry.services.audit import verify_audit_chain

        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        report = verify_audit_chain()
        context = {
            **self.admin_site.each_context(request),
            "title": "Audit chain verification",
            "report": report,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/models_registry/auditevent/verify.html", context)


# Task results: each person's own jobs, read-only (models_registry/admin/tasks.py).
admin_tasks.register(admin.site)
admin_policy.register(admin.site)

# API tokens: created (secret shown once) and revoked here (models_registry/admin/tokens.py).
from models_registry.admin.tokens import ApiTokenAdmin  # noqa: E402
from models_registry.models import ApiToken  # noqa: E402

admin.site.register(ApiToken, ApiTokenAdmin)
