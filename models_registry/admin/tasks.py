"""Task results (django-celery-results) for staff: read-only, each person's own jobs only.

A job belongs to whoever started it: the ``requested_by`` of the validation run, paper
run or deployment that carries the task id, or the user id a task takes as its last
argument (training, "Check hosts"). Scheduled jobs belong to nobody, so only superusers
see them. Anyone else asking for a task gets a 403 page that says whose job it is and
why they cannot see it, instead of Django's bare "403 Forbidden".
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django_celery_results.models import TaskResult

from models_registry import formatting
from models_registry.models import Deployment, PaperTradingRun, ValidationRun

# Tasks whose last positional argument is the id of the user who started them.
USER_ARG_TASKS = ("models_registry.train_model", "models_registry.check_target_hosts")
# The registry rows that carry a task id and the person who asked for the job.
JOB_MODELS: tuple[tuple[Any, str, str], ...] = (
    (ValidationRun, "validation run", "validation_run_pk"),
    (PaperTradingRun, "paper run", "paper_run_pk"),
    (Deployment, "deployment", "deployment_pk"),
)
FAILED_STATES = ("FAILURE", "REVOKED")


def own_tasks(user: Any) -> QuerySet[TaskResult]:
    """The task results of jobs ``user`` started (all of them for a superuser): one rule for
    the list and the detail page alike."""
    results = TaskResult.objects.all()
    if user.is_superuser:
        return results
    mine = Q(task_name__in=USER_ARG_TASKS, task_args__regex=_last_arg_pattern(user.pk))
    for model, _what, _column in JOB_MODELS:
        started = model.objects.filter(requested_by=user).exclude(task_id="")
        mine |= Q(task_id__in=started.values("task_id"))
    return results.filter(mine)


def with_jobs(results: QuerySet[TaskResult]) -> QuerySet[TaskResult]:
    """Each result with the pk of the registry row it ran for: one query for a whole list."""
    return results.annotate(
        **{
            column: Subquery(model.objects.filter(task_id=OuterRef("task_id")).values("pk")[:1])
            for model, _what, column in JOB_MODELS
        }
    )


def job_label(task: TaskResult) -> str:
    """'validation run #12', 'train model', or the schedule's name, from ``with_jobs``."""
    for _model, what, column in JOB_MODELS:
        pk = getattr(task, column, None)
        if pk:
            return f"{what} #{pk}"
    if task.task_name in USER_ARG_TASKS:
        return task.task_name.rsplit(".", 1)[-1].replace("_", " ")
    return task.periodic_task_name or task.task_name or "task"


def _last_arg_pattern(pk: int) -> str:
    # The backend stores Celery's argsrepr, JSON-encoded: "('BTCUSDT', {...}, 3)" in quotes.
    # The id must be a whole last element: 3 matches "..., 3)" but not "..., 13)".
    return rf"[(, ]{int(pk)},?\)\"?$"


def task_owner(task: TaskResult) -> tuple[Any | None, str]:
    """Who started the task and as which job, in words (for the 403 page and the detail)."""
    for model, what, _column in JOB_MODELS:
        job = model.objects.filter(task_id=task.task_id).select_related("requested_by").first()
        if job is not None:
            return job.requested_by, f"{what} #{job.pk}"
    if task.task_name in USER_ARG_TASKS:
        user_id = _last_arg(task.task_args)
        user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
        return user, task.task_name.rsplit(".", 1)[-1].replace("_", " ")
    return None, task.periodic_task_name or (task.task_name or "task")


def _last_arg(task_args: str | None) -> int | None:
    try:
        decoded = json.loads(task_args or "null")
        args = ast.literal_eval(decoded) if isinstance(decoded, str) else decoded
    except (ValueError, SyntaxError, TypeError):
        return None
    if isinstance(args, list | tuple) and args and isinstance(args[-1], int):
        return int(args[-1])
    return None


def error_sentence(task: TaskResult) -> str:
    """A failed task's error as one sentence a person reads, not its traceback."""
    if task.status not in FAILED_STATES:
        return ""
    try:
        result = json.loads(task.result or "null")
    except json.JSONDecodeError:
        result = task.result
    exc_type, message = "", ""
    if isinstance(result, dict):
        exc_type = str(result.get("exc_type") or "")
        raw = result.get("exc_message")
        message = " ".join(str(m) for m in raw) if isinstance(raw, list | tuple) else str(raw or "")
    elif result:
        message = str(result)
    if not message and task.traceback:
        # The last line of a traceback is "Type: message"; the frames above it are for a debugger.
        last = task.traceback.strip().splitlines()[-1]
        exc_type, _, message = last.partition(": ")
    message = re.sub(r"\s+", " ", message).strip().rstrip(".")
    if not message:
        return f"The task failed ({exc_type or task.status}) without saying why."
    kind = f" ({exc_type})" if exc_type else ""
    return f"The task failed{kind}: {message[:300]}."


def forbidden_page(request: HttpRequest, task: TaskResult | None, task_id: str) -> HttpResponse:
    """A readable 403 in the admin's frame: whose job it is, and why this user may not see it."""
    owner, job = task_owner(task) if task is not None else (None, "task")
    if owner is not None:
        whose = f"it is the {job} started by {owner.get_username()}"
    else:
        whose = f"it is the {job}, started by the scheduler rather than a person"
    reason = (
        f"You cannot see task {task_id[:8]}: {whose}, and staff see only the results of "
        "jobs they started themselves. Ask its owner or a superuser."
    )
    context = {**admin.site.each_context(request), "title": "Not your task", "reason": reason}
    return TemplateResponse(
        request, "admin/models_registry/taskresult/forbidden.html", context, status=403
    )


class OwnTaskResultAdmin(admin.ModelAdmin):
    """Read-only task results: a staff member sees the results of their own jobs."""

    list_display = ("short_id", "task_name", "job", "status", "created", "done", "error")
    list_filter = ("status", "task_name")
    search_fields = ("task_id", "task_name")
    ordering = ("-date_created",)
    show_full_result_count = False
    change_form_template = "admin/models_registry/taskresult/detail.html"

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskResult]:
        return with_jobs(own_tasks(request.user))

    @admin.display(description="task")
    def short_id(self, obj: TaskResult) -> str:
        return obj.task_id[:8]

    @admin.display(description="job")
    def job(self, obj: TaskResult) -> str:
        return job_label(obj)

    @admin.display(description="created (UTC)", ordering="date_created")
    def created(self, obj: TaskResult) -> str:
        return formatting.utc(obj.date_created)

    @admin.display(description="done (UTC)", ordering="date_done")
    def done(self, obj: TaskResult) -> str:
        return formatting.utc(obj.date_done)

    @admin.display(description="error")
    def error(self, obj: TaskResult) -> str:
        return error_sentence(obj) or formatting.DASH

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # Links elsewhere point at "?task_id=...": a task that is not yours gets the 403 page
        # naming why, not an empty list that looks like a lost result.
        task_id = request.GET.get("task_id", "")
        if task_id and not self.get_queryset(request).filter(task_id=task_id).exists():
            task = TaskResult.objects.filter(task_id=task_id).first()
            if task is not None:
                return forbidden_page(request, task, task_id)
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        task = TaskResult.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        if task is None:
            return super().change_view(request, object_id, form_url, extra_context)
        if not self.get_queryset(request).filter(pk=task.pk).exists():
            return forbidden_page(request, task, task.task_id)
        owner, job = task_owner(task)
        context = {
            **self.admin_site.each_context(request),
            **(extra_context or {}),
            "title": f"Task {task.task_id[:8]}",
            "opts": self.model._meta,
            "task": task,
            "job": job,
            "owner": owner.get_username() if owner else "the scheduler",
            "created": formatting.utc(task.date_created),
            "started": formatting.utc(task.date_started),
            "done": formatting.utc(task.date_done),
            "error": error_sentence(task),
            "result_table": _result_table(task),
            "list_url": reverse("admin:django_celery_results_taskresult_changelist"),
        }
        return TemplateResponse(request, self.change_form_template, context)


def _result_table(task: TaskResult) -> str:
    if task.status in FAILED_STATES:
        return formatting.DASH
    try:
        result = json.loads(task.result or "null")
    except json.JSONDecodeError:
        return format_html("{}", task.result)
    return formatting.key_value_table(result)


def register(site: admin.AdminSite) -> None:
    """Replace django-celery-results' admin (superusers only, editable) with this one."""
    if site.is_registered(TaskResult):
        site.unregister(TaskResult)
    site.register(TaskResult, OwnTaskResultAdmin)
