"""The model health page: a production version's scheduled runs over time, and its status.

Wired into the ModelVersion admin with ``health_urls(self.admin_site)`` placed before the
default URLs in ``ModelVersionAdmin.get_urls``; it answers
``admin:models_registry_modelversion_health`` (``<pk>/health/``). The chart is a PNG drawn
with matplotlib's Agg backend and inlined, so the page is one request and one permission
check (``view_modelversion``).
"""

from __future__ import annotations

import base64
import io
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django_celery_results.models import TaskResult

from models_registry.models import ModelVersion, ValidationRun
from models_registry.services import lifecycle
from models_registry.services.monitoring import WALK_FORWARD_SLOT_PREFIX

CHART_SERIES = (
    ("sharpe", "Sharpe"),
    ("max_drawdown", "Max drawdown"),
    ("total_return", "Return"),
    ("live_divergence", "Live divergence"),
)


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


def run_rows(version: ModelVersion) -> list[dict[str, Any]]:
    runs = list(
        version.validation_runs.filter(kind=ValidationRun.KIND_SCHEDULED).order_by("created_at")
    )
    results = {
        r.task_id: r.pk
        for r in TaskResult.objects.filter(task_id__in=[run.task_id for run in runs if run.task_id])
    }
    rows = []
    for run in runs:
        metrics = run.metrics or {}
        task_result = results.get(run.task_id)
        rows.append(
            {
                "run": run,
                "report": run.scheduled_slot
                and run.scheduled_slot.startswith(WALK_FORWARD_SLOT_PREFIX),
                "sharpe": metrics.get("sharpe"),
                "max_drawdown": metrics.get("max_drawdown"),
                "total_return": metrics.get("total_return"),
                "live_divergence": _live_divergence(run),
                "failed_gates": [g.get("name") for g in run.gate_results if not g.get("passed")],
                "run_url": reverse("admin:models_registry_validationrun_change", args=[run.pk]),
                "task_url": reverse(
                    "admin:django_celery_results_taskresult_change", args=[task_result]
                )
                if task_result
                else None,
            }
        )
    return rows


def health_chart_png(rows: list[dict[str, Any]]) -> bytes:
    """One panel per series, x = each run's window end; daily runs only (reports overlap)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    daily = [r for r in rows if not r["report"] and r["run"].window_end]
    figure = Figure(figsize=(9, 7), dpi=80)
    axes = figure.subplots(len(CHART_SERIES), 1, sharex=True)
    for axis, (key, label) in zip(axes, CHART_SERIES, strict=True):
        points = [(r["run"].window_end, r[key]) for r in daily if r[key] is not None]
        if points:
            times, values = zip(*points, strict=True)
            axis.plot(times, values, marker="o")
        axis.set_ylabel(label, fontsize=8)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("window end (UTC)")
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


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
        "rows": list(reversed(rows)),
        "chart": base64.b64encode(health_chart_png(rows)).decode(),
        "approval_in_force": lifecycle.current_approval(version),
        "suspension": suspension,
        "version_url": reverse("admin:models_registry_modelversion_change", args=[version.pk]),
        "opts": ModelVersion._meta,
    }
    return TemplateResponse(request, "admin/models_registry/health.html", context)
