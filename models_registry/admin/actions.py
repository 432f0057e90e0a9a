"""One concern: the admin's workflow actions and their confirmation pages.

The admin's workflow actions and pages, kept apart from the ModelAdmin declarations.

Each action declares its permission, re-checks every selected version's state
(the list the user saw may be stale), calls one service, and reports per
version. Actions that deploy, approve or roll back go through a confirmation page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from models_registry.admin import cockpit as admin_cockpit
from models_registry.models import (
    AuditEvent,
    DeploymentTarget,
    Environment,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RegistryError,
    ValidationRun,
)
from models_registry.services import deployments, lifecycle, runs
from models_registry.services.model_versions import search_plot_name


def _report(request: HttpRequest, version: ModelVersion, ok: bool, text: str) -> None:
    """One message per version, its name in its own case: "btcusdt_sentiment v3: approved".

    Refusals from services may begin with a capitalised name; the message keeps the
    service's words.
    """
    level = messages.SUCCESS if ok else messages.ERROR
    messages.add_message(request, level, f"{version}: {text}")


def _each_fresh(queryset: QuerySet) -> list[ModelVersion]:
    """Reload the selection: the state on the page may be out of date."""
    return list(
        ModelVersion.objects.filter(pk__in=queryset.values("pk")).order_by("name", "version")
    )


# --- simple actions: queue a run ---------------------------------------------


@admin.action(description="Validate: backtest on out-of-sample data", permissions=["validate"])
def validate_versions(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    for version in _each_fresh(queryset):
        try:
            run = runs.validation_run_request(
                model_version=version, requested_by=admin_cockpit.staff_user(request)
            )
        except RegistryError as exc:
            _report(request, version, False, str(exc))
        else:
            _report(request, version, True, f"validation run #{run.pk} queued")


@admin.action(
    description="Replay pre-check on bars the model never saw", permissions=["papertrade"]
)
def paper_trade_versions(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    for version in _each_fresh(queryset):
        try:
            run = runs.paper_run_request(
                model_version=version, requested_by=admin_cockpit.staff_user(request)
            )
        except RegistryError as exc:
            _report(request, version, False, str(exc))
        else:
            _report(request, version, True, f"replay #{run.pk} queued")


# --- actions with a confirmation page ------------------------------------------


class CommentForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Recorded with the decision, which is final.",
    )


class TargetForm(forms.Form):
    target = forms.ModelChoiceField(queryset=DeploymentTarget.objects.none())
    force_reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Only to deploy outside the target's deployment window: say why (audited).",
    )
    schedule = forms.BooleanField(
        required=False,
        help_text="Outside the window: schedule for the start of the next one instead.",
    )

    def __init__(self, *args: Any, environment: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # fields holds base Field; "target" is the ModelChoiceField declared above.
        target = cast(forms.ModelChoiceField, self.fields["target"])
        target.queryset = DeploymentTarget.objects.filter(environment=environment).prefetch_related(
            "hosts"
        )


class RollbackForm(forms.Form):
    """Choices, not free text: the (target, version) pairs a rollback can restore now."""

    restore = forms.ChoiceField(
        label="Restore",
        help_text="Only versions that ran on the target and whose approval is in force. "
        "The default is the one named in 'What a rollback restores' above.",
    )
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))

    def __init__(self, *args: Any, model_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pairs = {
            f"{target.pk}:{version.pk}": (target, version)
            for target, version in admin_cockpit.restorable_versions(model_name)
        }
        field = cast(forms.ChoiceField, self.fields["restore"])
        field.choices = [
            (key, f"{version} on {target.name} (sha256 {version.onnx_sha256[:12]})")
            for key, (target, version) in self.pairs.items()
        ]
        if self.pairs:
            field.initial = next(iter(self.pairs))
        else:
            field.help_text = "No version can be restored now: see 'What a rollback restores'."

    def chosen(self) -> tuple[DeploymentTarget, ModelVersion]:
        return self.pairs[self.cleaned_data["restore"]]


def _confirmation_page(
    modeladmin: Any,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    title: str,
    form: forms.Form,
    details: list[dict[str, Any]],
    rollbacks: list[dict[str, Any]] | None = None,
) -> TemplateResponse:
    context = {
        "rollbacks": rollbacks or [],
        "cancel_url": request.META.get("HTTP_REFERER") or ".",
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "action": action,
        "form": form,
        "details": details,
        "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/models_registry/confirm_action.html", context)


def _version_details(
    versions: list[ModelVersion], environment: str = Environment.PRODUCTION
) -> list[dict[str, Any]]:
    """Everything a person needs to decide, per version (runs, gates, warnings, comparison)."""
    return [admin_cockpit.decision_evidence(v, environment) for v in versions[:20]]


def _decision_action(
    modeladmin: Any,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    title: str,
    decide: Any,
    done: str,
) -> HttpResponse | None:
    """A decision with a comment: a confirmation page first, then one service call per version."""
    versions = _each_fresh(queryset)
    form = CommentForm(request.POST if "apply" in request.POST else None)
    if "apply" not in request.POST or not form.is_valid():
        return _confirmation_page(
            modeladmin, request, queryset, action=action, title=title, form=form,
            details=_version_details(versions),
        )  # fmt: skip
    for version in versions:
        try:
            decide(version, request.user, form.cleaned_data["comment"])
        except RegistryError as exc:
            _report(request, version, False, str(exc))
        else:
            _report(request, version, True, done)
    return None


@admin.action(description="Approve for production (four eyes)", permissions=["approve"])
def approve_versions(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    return _decision_action(
        modeladmin, request, queryset, action="approve_versions", title="Approve for production",
        decide=lambda version, user, comment: (
            lifecycle.model_version_reapprove
            if lifecycle.needs_new_approval(version)
            else lifecycle.model_version_approve
        )(model_version=version, approved_by=user, comment=comment),
        done="approved",
    )  # fmt: skip


@admin.action(description="Reject (with a reason)", permissions=["reject"])
def reject_versions(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    return _decision_action(
        modeladmin, request, queryset, action="reject_versions", title="Reject versions",
        decide=lambda version, user, comment: lifecycle.model_version_reject(
            model_version=version, rejected_by=user, comment=comment
        ),
        done="rejected",
    )  # fmt: skip


def _deploy_action(
    modeladmin: Any,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    environment: str,
    action: str,
    title: str,
) -> HttpResponse | None:
    versions = _each_fresh(queryset)
    posted = "apply" in request.POST
    form = TargetForm(request.POST if posted else None, environment=environment)
    if posted and form.is_valid():
        target = form.cleaned_data["target"]
        for version in versions:
            try:
                deployment = deployments.deployment_request(
                    model_version=version,
                    target=target,
                    requested_by=admin_cockpit.staff_user(request),
                    force_reason=form.cleaned_data["force_reason"],
                    schedule_if_closed=form.cleaned_data["schedule"],
                )
            except RegistryError as exc:
                _report(request, version, False, str(exc))
            else:
                _report(request, version, True, f"deployment #{deployment.pk} to {target.name}: "
                        f"{deployment.get_status_display().lower()}")  # fmt: skip
        return None
    details = _version_details(versions, environment)
    return _confirmation_page(
        modeladmin, request, queryset, action=action, title=title, form=form, details=details
    )


@admin.action(
    description="Stage: deploy to a staging target and check compatibility", permissions=["stage"]
)
def stage_versions(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    return _deploy_action(
        modeladmin, request, queryset, environment=Environment.STAGING, action="stage_versions",
        title="Deploy to staging",
    )  # fmt: skip


@admin.action(description="Deploy to production", permissions=["deploy"])
def deploy_versions(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    return _deploy_action(
        modeladmin, request, queryset, environment=Environment.PRODUCTION, action="deploy_versions",
        title="Deploy to production",
    )  # fmt: skip


@admin.action(description="Roll back production", permissions=["rollback"])
def rollback_production(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    versions = _each_fresh(queryset)
    model_name = versions[0].name if versions else None
    form = RollbackForm(request.POST if "apply" in request.POST else None, model_name=model_name)
    if "apply" in request.POST and form.is_valid():
        target, version = form.chosen()
        try:
            deployment = deployments.rollback_request(
                target=target,
                to_version_number=version.version,
                requested_by=admin_cockpit.staff_user(request),
                comment=form.cleaned_data["comment"],
                model_name=version.name,
            )
        except RegistryError as exc:
            # The page again, the comment kept: the person corrects, not retypes.
            form.add_error(None, f"rollback of {target.name} refused: {exc}")
        else:
            messages.success(
                request,
                f"rollback #{deployment.pk} of {target.name} to {deployment.model_version} queued",
            )
            return None
    previews = [
        admin_cockpit.rollback_preview(target, model_name)
        for target in DeploymentTarget.objects.filter(environment=Environment.PRODUCTION)
    ]
    return _confirmation_page(
        modeladmin, request, queryset, action="rollback_production", title="Roll back production",
        form=form, details=_version_details(versions), rollbacks=previews,
    )  # fmt: skip


# --- pages ---------------------------------------------------------------------


def version_page_context(object_id: str, user: Any = None) -> dict[str, Any]:
    if not str(object_id).isdigit():
        return {}  # the admin answers 404 for an id that cannot be a key
    version = (
        ModelVersion.objects.filter(pk=object_id)
        .select_related("created_by", "approval_requested_by")
        .first()
    )
    if version is None:
        return {}
    production = (
        ModelVersion.objects.filter(symbol=version.symbol, state=ModelState.IN_PRODUCTION)
        .exclude(pk=version.pk)
        .order_by("-created_at")
        .first()
    )
    evidence = admin_cockpit.decision_evidence(version, Environment.PRODUCTION)
    return {
        "version_obj": version,
        "evidence": evidence,
        "cockpit": admin_cockpit.banner(user, version) if user is not None else None,
        "search": (version.metadata or {}).get("search"),
        "search_plot_url": _search_plot_url(version),
        "health_url": reverse("admin:models_registry_modelversion_health", args=[version.pk]),
        "validation_runs": list(version.validation_runs.all()[:20]),
        "paper_runs": list(version.paper_runs.all()[:20]),
        "approvals": list(
            version.approvals.select_related("decided_by").prefetch_related("suspensions")
        ),
        "deployments_list": list(
            version.deployments.select_related("target", "requested_by").order_by("-created_at")[
                :20
            ]
        ),
        "history": list(
            AuditEvent.objects.filter(
                object_type="ModelVersion", object_id=str(version.pk)
            ).order_by("id")
        ),
        "production_version": production,
        # Like for like: the version in production on this version's own validation window.
        "comparison": evidence["comparison"],
    }


def version_action_view(
    modeladmin: Any, request: HttpRequest, pk: int, action: str
) -> HttpResponse:
    """A version page's button: the same action as the list's, on this one version.

    GET shows the action's confirmation page; the confirmation POSTs back here. Actions
    without a confirmation page (validate, paper-trade) run on POST only.
    """
    rule = admin_cockpit.RULES_BY_NAME.get(action)
    if rule is None:
        raise Http404(f"no action {action!r}")
    version = get_object_or_404(ModelVersion, pk=pk)
    page = reverse("admin:models_registry_modelversion_change", args=[version.pk])
    if not admin_cockpit.user_may(admin_cockpit.staff_user(request), rule):
        messages.error(request, f"You may not {rule.label.lower()}: your role lacks it.")
        return HttpResponseRedirect(page)
    queryset = ModelVersion.objects.filter(pk=version.pk)
    if action in QUEUE_ACTIONS and request.method != "POST":
        return _confirmation_page(
            modeladmin, request, queryset, action=action, title=f"{rule.label}: {version}",
            form=forms.Form(), details=_version_details([version]),
        )  # fmt: skip
    if action in QUEUE_ACTIONS:
        QUEUE_ACTIONS[action](modeladmin, request, queryset)
        return HttpResponseRedirect(page)
    response = CONFIRM_ACTIONS[action](modeladmin, request, queryset)
    return response if response is not None else HttpResponseRedirect(page)


def version_jobs_view(request: HttpRequest, pk: int) -> JsonResponse:
    """The version's queued and running jobs and latest outcomes, for the page's polling."""
    if not request.user.has_perm("models_registry.view_modelversion"):
        raise PermissionDenied("viewing versions needs the view permission")
    version = get_object_or_404(ModelVersion, pk=pk)
    return JsonResponse(admin_cockpit.jobs_payload(version))


def _search_plot_url(version: ModelVersion) -> str | None:
    path = _trials_plot_path(version)
    if path is None or not path.is_file():
        return None
    return reverse("admin:models_registry_artifact", args=["modelversion", version.pk, "trials"])


ARTIFACT_SOURCES = {
    "modelversion": ModelVersion,
    "validationrun": ValidationRun,
    "papertradingrun": PaperTradingRun,
}


def artifact_view(request: HttpRequest, kind: str, pk: int, which: str) -> FileResponse:
    """Serve a plot from the artifact store to a user allowed to view its record.

    ``which``: "plot" (training plot or equity curve), or "trials" (a searched version's
    hyper-parameter search plot).
    """
    model = ARTIFACT_SOURCES.get(kind)
    if (
        model is None
        or which not in ("plot", "trials")
        or (which == "trials" and model is not ModelVersion)
    ):
        raise Http404("no such artifact")
    if not request.user.has_perm(f"models_registry.view_{kind}"):
        raise PermissionDenied
    obj = get_object_or_404(model, pk=pk)
    if which == "plot":
        path = _plot_path(obj)
    elif isinstance(obj, ModelVersion):  # "trials" was refused above for any other kind
        path = _trials_plot_path(obj)
    else:
        raise Http404("no such artifact")
    if path is None or not path.is_file():
        raise Http404("this record has no plot")
    return FileResponse(path.open("rb"), content_type="image/png")


def _trials_plot_path(version: ModelVersion) -> Path | None:
    name = search_plot_name(version.metadata)
    if name is None:
        return None
    media = Path(settings.MEDIA_ROOT).resolve()
    path = (media / version.artifact_dir / name).resolve()
    return path if path.is_relative_to(media) else None


def _plot_path(obj: Any) -> Path | None:
    media = Path(settings.MEDIA_ROOT).resolve()
    if isinstance(obj, ModelVersion):
        if not obj.plot_file:
            return None
        path = (media / obj.artifact_dir / obj.plot_file).resolve()
    else:
        if not obj.plot_file:
            return None
        path = (media / obj.report_dir / obj.plot_file).resolve()
    # Names come from our own records, but never serve anything outside the store.
    return path if path.is_relative_to(media) else None


TRAINING_TASK = "models_registry.train_model"


def recent_training_jobs(limit: int = 5) -> list[dict[str, Any]]:
    """The latest training tasks and how far each has got (the task reports its epochs)."""
    from django_celery_results.models import TaskResult

    jobs = []
    for result in TaskResult.objects.filter(task_name=TRAINING_TASK).order_by("-date_created")[
        :limit
    ]:
        try:
            info = json.loads(result.result or "null")
        except json.JSONDecodeError:
            info = None
        jobs.append(
            {
                "task_id": result.task_id,
                "status": result.status,
                "created": result.date_created,
                "progress": _progress_text(result.status, info),
            }
        )
    return jobs


def _progress_text(status: str, info: Any) -> str:
    if status == "PROGRESS" and isinstance(info, dict) and info.get("n_trials"):
        trial = f"trial {info.get('trial')} of {info['n_trials']}"
        if info.get("trial_state"):
            return f"{trial} {info['trial_state']}"
        loss = info.get("loss")
        loss_text = f", loss {loss:.3g}" if isinstance(loss, int | float) else ""
        return f"{trial}: epoch {info.get('epoch')} of at most {info.get('total')}{loss_text}"
    if status == "PROGRESS" and isinstance(info, dict) and info.get("total"):
        loss = info.get("loss")
        loss_text = f", loss {loss:.3g}" if isinstance(loss, int | float) else ""
        return f"epoch {info.get('epoch')} of at most {info['total']}{loss_text}"
    if status == "SUCCESS" and isinstance(info, dict) and info.get("name"):
        return f"{info['name']} v{info.get('version')} registered"
    if status == "FAILURE" and isinstance(info, dict):
        return str(info.get("exc_message") or info.get("exc_type") or "failed")[:200]
    return ""


class TrainForm(forms.Form):
    """The train_model command's options a person needs, checked by the same service."""

    symbol = forms.CharField(
        max_length=20,
        initial="BTCUSDT",
        help_text="a symbol with candles in the data store",
        widget=forms.Select(),
    )
    kind = forms.ChoiceField(
        choices=[("sentiment", "sentiment (price and sentiment)"), ("price", "price only")],
        initial="sentiment",
    )
    start = forms.CharField(required=False, help_text="UTC start, e.g. 2023-01-01 (inclusive)")
    end = forms.CharField(
        required=False,
        help_text="UTC end of the training window, e.g. 2024-01-01 (exclusive). Empty: the "
        "newest days stay unseen for the policy validation and a paper run (90 + 14 by default)",
    )
    gap_policy = forms.ChoiceField(
        choices=[("refuse", "refuse to train on missing candles"),
                 ("ffill", "forward-fill short gaps (recorded in the metadata)")],
        initial="refuse",
    )  # fmt: skip
    max_fill = forms.IntegerField(min_value=1, initial=3, help_text="longest gap to fill, bars")
    epochs = forms.IntegerField(min_value=1, max_value=500, initial=20)
    search_trials = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=500,
        help_text="hyper-parameter search budget (trials); empty: no search",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from models_registry.services.training import stored_symbols

        super().__init__(*args, **kwargs)
        self.symbols = stored_symbols()
        widget = cast(forms.Select, self.fields["symbol"].widget)
        widget.choices = [(s, s) for s in self.symbols] or [("", "no symbol in the store yet")]

    def clean_symbol(self) -> str:
        # Lowercase is the same symbol: Binance and the store spell it in capitals.
        symbol = str(self.cleaned_data["symbol"]).strip().upper()
        if symbol not in self.symbols:
            stored = ", ".join(self.symbols) or "none yet"
            raise forms.ValidationError(
                f"{symbol or 'no symbol'} has no candles in the data store (stored: {stored})"
            )
        return symbol

    def training_options(self) -> dict[str, Any]:
        data = self.cleaned_data
        options: dict[str, Any] = {
            "force_price_only": data["kind"] == "price",
            "epochs": data["epochs"],
            "start": data["start"] or None,
            "end": data["end"] or None,
            "gap_policy": data["gap_policy"],
            "max_fill": data["max_fill"],
        }
        if data.get("search_trials"):
            # The service's name for the budget (TrainingOptions.search, train_model --search).
            options["search"] = data["search_trials"]
        return options


def form_errors_sentence(form: forms.Form) -> str:
    """A form's errors as one sentence a person reads: "end: enter a date; epochs: ..."."""
    parts = []
    for field, errors in form.errors.items():
        label = form.fields[field].label or field if field in form.fields else ""
        text = " ".join(str(e) for e in errors)
        parts.append(f"{label}: {text}" if label else text)
    return "; ".join(parts) + "."


def train_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("models_registry.train_model"):
        raise PermissionDenied
    form = TrainForm(request.POST or None)
    if request.method == "POST" and not form.is_valid():
        messages.error(request, f"training not queued: {form_errors_sentence(form)}")
    elif request.method == "POST":
        from models_registry.models import RegistryError as Refused
        from models_registry.services.training import training_data_check
        from models_registry.tasks.training import train_model_task

        options = form.training_options()
        try:
            # The refusal to train in production lives on the worker that would train; the
            # web only queues onto the training queue (a training host's worker takes it).
            training_data_check(form.cleaned_data["symbol"], options)
        except (Refused, ValueError, TypeError) as exc:
            messages.error(request, f"training not queued: {exc}")
        else:
            symbol = form.cleaned_data["symbol"]
            result = train_model_task.delay(symbol, options, request.user.pk)
            messages.success(request, f"training of {symbol} queued (task {result.id[:8]})")
            return HttpResponseRedirect(reverse("admin:models_registry_modelversion_changelist"))
    context = {**admin.site.each_context(request), "title": "Train a model", "form": form,
               "opts": ModelVersion._meta}  # fmt: skip
    return TemplateResponse(request, "admin/models_registry/simple_form.html", context)


class RegisterForm(forms.Form):
    onnx_file = forms.FileField(help_text="The .onnx model")
    metadata_file = forms.FileField(help_text="Its *_metadata.json")
    plot_file = forms.FileField(required=False, help_text="Optional training plot (PNG)")


def register_view(request: HttpRequest) -> HttpResponse:
    """Register a model trained elsewhere: names come from the metadata, never the upload."""
    if not request.user.has_perm("models_registry.register_modelversion"):
        raise PermissionDenied
    form = RegisterForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and not form.is_valid():
        # A bad upload is the client's fault: 400 with one line, never a 500 (#26).
        messages.error(request, f"registration refused: {one_line(form_errors_sentence(form))}")
        status = 400
    elif request.method == "POST":
        from models_registry.services.registration import model_version_register_upload

        try:
            version = model_version_register_upload(
                onnx_upload=form.cleaned_data["onnx_file"],
                metadata_upload=form.cleaned_data["metadata_file"],
                plot_upload=form.cleaned_data.get("plot_file"),
                registered_by=admin_cockpit.staff_user(request),
            )
        except RegistryError as exc:
            messages.error(request, f"registration refused: {one_line(str(exc))}")
            status = 400
        else:
            messages.success(request, f"registered {version}")
            return HttpResponseRedirect(
                reverse("admin:models_registry_modelversion_change", args=[version.pk])
            )
    context = {**admin.site.each_context(request), "title": "Register a model trained elsewhere",
               "form": form, "opts": ModelVersion._meta, "multipart": True}  # fmt: skip
    return TemplateResponse(
        request, "admin/models_registry/simple_form.html", context, status=status
    )


def one_line(text: str, limit: int = 300) -> str:
    """An error for a page: one line, bounded (it may quote what the client sent)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


QUEUE_ACTIONS: dict[str, Any] = {
    "validate_versions": validate_versions,
    "paper_trade_versions": paper_trade_versions,
}
CONFIRM_ACTIONS: dict[str, Any] = {
    "stage_versions": stage_versions,
    "approve_versions": approve_versions,
    "reject_versions": reject_versions,
    "deploy_versions": deploy_versions,
    "rollback_production": rollback_production,
}


# --- targets that need attention (issue 26) ---------------------------------------------


class AcknowledgeForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="What you checked and repaired on the hosts (audited). The hosts are read "
        "first: only a target serving the registry's version everywhere is accepted.",
    )


@admin.action(
    description="Acknowledge needs attention (after a consistent host check)",
    permissions=["deploy"],
)
def acknowledge_attention(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    from models_registry.services import attention_checks

    form = AcknowledgeForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        for target in queryset:
            try:
                attention_checks.target_attention_acknowledge(
                    target=target,
                    acknowledged_by=admin_cockpit.staff_user(request),
                    comment=form.cleaned_data["comment"],
                )
            except RegistryError as exc:
                messages.error(request, f"{target.name}: not acknowledged: {exc}")
            else:
                messages.success(request, f"{target.name}: acknowledged; deploys accepted again")
        return None
    return _confirmation_page(
        modeladmin, request, queryset, action="acknowledge_attention",
        title="Acknowledge needs attention", form=form, details=[],
    )  # fmt: skip
