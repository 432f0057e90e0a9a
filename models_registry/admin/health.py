"""The model health page: a production version's scheduled runs over time, and its status.

Wired into the ModelVersion admin with ``health_urls(self.admin_site)`` placed before the
default URLs in ``ModelVersionAdmin.get_urls``; it answers
``admin:models_registry_modelversion_health`` (``<pk>/health/``). The charts are inline SVG
drawn from the runs (``svg_charts``): the page is one request and one permission check
(``view_modelversion``), and no plotting library runs per request (matplotlib took
1.8 to 5.4 s here).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django_celery_results.models import TaskResult

from models_registry import formatting, svg_charts
from models_registry.models import ModelVersion, ValidationRun
from models_registry.services import lifecycle
from models_registry.services.monitoring.window import WALK_FORWARD_SLOT_PREFIX

# (row key, title, how the axis labels read): fractions of equity read as percentages.
CHART_SERIES = (
    ("sharpe", "Sharpe", formatting.number),
    ("max_drawdown", "Max drawdown", formatting.percent),
    ("total_return", "Return", formatting.percent),
    ("live_divergence", "Live divergence", formatting.percent),
)


# The table lists the latest runs; the charts draw every run (a year of daily runs is 365
# rows, and rendering them all as a table is most of the page's time).
TABLE_ROWS = 60


def health_urls(admin_site: Any) -> list[Any]:
    return [
        path(
            "<int:pk>/health/",
            admin_site.admin_view(health_view),
            name="models_registry_modelversion_health",
        )
    ]


def _live_divergence(run: ValidationRun) -> float | None:
    compared = [
        c["divergence"]
        for c in (run.drift or {}).get("live", {}).get("comparisons", [])
        if c.get("compared")
    ]
    return max(compared) if compared else None


# What the page reads of a run: the other JSON columns (config, baselines) stay in the
# database, since decoding them for a year of daily runs is most of the page's time.
RUN_FIELDS = (
    "id", "model_version_id", "scheduled_slot", "window_start", "window_end", "status",
    "metrics", "drift", "gate_results", "task_id", "created_at",
)  # fmt: skip


def run_rows(version: ModelVersion) -> list[dict[str, Any]]:
    runs = (
        version.validation_runs.filter(kind=ValidationRun.KIND_SCHEDULED)
        .only(*RUN_FIELDS)
        .order_by("created_at", "id")
    )
    rows = []
    for run in runs:
        metrics = run.metrics or {}
        rows.append(
            {
                "run": run,
                "report": (run.scheduled_slot or "").startswith(WALK_FORWARD_SLOT_PREFIX),
                "sharpe": metrics.get("sharpe"),
                "max_drawdown": metrics.get("max_drawdown"),
                "total_return": metrics.get("total_return"),
                "live_divergence": _live_divergence(run),
                "failed_gates": [g.get("name") for g in run.gate_results if not g.get("passed")],
            }
        )
    return rows


def with_links(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Links for the rows the table shows: one TaskResult query, one reverse per kind of link."""
    results = dict(
        TaskResult.objects.filter(
            task_id__in=[r["run"].task_id for r in rows if r["run"].task_id]
        ).values_list("task_id", "pk")
    )
    run_url = reverse("admin:models_registry_validationrun_change", args=[0])
    task_url = reverse("admin:django_celery_results_taskresult_change", args=[0])
    for row in rows:
        task_result = results.get(row["run"].task_id)
        row["run_url"] = run_url.replace("/0/", f"/{row['run'].pk}/")
        row["task_url"] = task_url.replace("/0/", f"/{task_result}/") if task_result else None
    return rows


def health_charts(rows: list[dict[str, Any]]) -> list[str]:
    """One SVG chart per series, x = each run's window end; daily runs only (reports overlap)."""
    daily = [r for r in rows if not r["report"] and r["run"].window_end]
    return [
        svg_charts.line_chart(
            [(r["run"].window_end, r[key]) for r in daily],
            title=label,
            y_format=y_format,
            x_title="window end (UTC)",
        )
        for key, label, y_format in CHART_SERIES
    ]


def health_view(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("models_registry.view_modelversion"):
        raise PermissionDenied
    version = get_object_or_404(ModelVersion, pk=pk)
    rows = run_rows(version)
    latest = version.approvals.order_by("-decided_at", "-id").first()
    suspension = latest.suspensions.order_by("-id").first() if latest else None
    from django.contrib import admin

    context = {
        **admin.site.each_context(request),
        "title": f"Health of {version}",
        "version": version,
        "rows": with_links(list(reversed(rows))[:TABLE_ROWS]),
        "rows_total": len(rows),
        "rows_capped": len(rows) > TABLE_ROWS,
        "charts": health_charts(rows),
        "approval_in_force": lifecycle.current_approval(version),
        "suspension": suspension,
        "version_url": reverse("admin:models_registry_modelversion_change", args=[version.pk]),
        "opts": ModelVersion._meta,
    }
    return TemplateResponse(request, "admin/models_registry/health.html", context)
