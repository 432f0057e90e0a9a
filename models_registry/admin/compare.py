"""The admin's Compare page: selected versions side by side, like for like (in the spirit of
MLflow's compare view).

Every figure is from one window (``services.comparison.common_window``), shown on the page.
Equity curves are overlaid in one inline SVG chart drawn from the curve each run stored
once (``equity_curve.json``): no plotting per request, no JavaScript. Parameters and data
lineage sit side by side with the rows that differ highlighted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from models_registry import formatting
from models_registry.admin.cockpit import staff_user
from models_registry.models import ModelVersion, ValidationRun
from models_registry.selectors import stored_curve
from models_registry.services import comparison

METRIC_ROWS = (
    ("total_return", "return after costs"),
    ("buy_and_hold_return", "buy-and-hold return (same bars)"),
    ("sharpe", "Sharpe ratio"),
    ("psr", "PSR"),
    ("dsr", "DSR"),
    ("trials", "trials counted"),
    ("max_drawdown", "max drawdown"),
    ("trades", "trades"),
    ("win_rate", "win rate"),
    ("profit_factor", "profit factor"),
)
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
HOLD_COLOUR = "#777777"
CHART_W, CHART_H, PAD_L, PAD_R, PAD_T, PAD_B = 860, 320, 64, 16, 16, 36
MAX_POINTS = 400  # per curve: finer than the chart's pixels are wide, cheap to send


# --- the action and the page --------------------------------------------------


@admin.action(description="Compare selected versions on one common window", permissions=["view"])
def compare_versions(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
    ids = ",".join(str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True))
    return HttpResponseRedirect(f"{reverse('admin:models_registry_compare')}?ids={ids}")


def compare_view(request: HttpRequest) -> HttpResponse:
    """GET: the comparison. POST (engineers): queue the missing runs, then show it again."""
    user = staff_user(request)
    if not user.has_perm("models_registry.view_modelversion"):
        messages.error(request, "Comparing versions needs permission to view them.")
        return HttpResponseRedirect(reverse("admin:index"))
    back = reverse("admin:models_registry_modelversion_changelist")
    try:
        versions = selected_versions(request.GET.get("ids", ""))
        window = chosen_window(versions, newest_only=request.GET.get("window") == "newest")
    except comparison.ComparisonRefused as exc:
        messages.error(request, f"cannot compare: {exc}")
        return HttpResponseRedirect(back)
    if request.method == "POST":
        return _queue_missing(request, versions, window)
    context = {
        **admin.site.each_context(request),
        "title": f"Compare {len(versions)} versions",
        "opts": ModelVersion._meta,
        **comparison_context(versions, window),
        "can_run": user.has_perm("models_registry.validate_modelversion"),
        "changelist_url": back,
    }
    return TemplateResponse(request, "admin/models_registry/modelversion/compare.html", context)


def chosen_window(
    versions: list[ModelVersion], *, newest_only: bool = False
) -> comparison.CommonWindow:
    """The newest unseen window when every version has a run there (or when asked for it);
    otherwise the newest window where every version already has one, so the page shows
    figures at once to anyone, with no backtest and no new trial."""
    newest = comparison.common_window(versions)
    if newest_only:
        return newest
    if newest.exists and all(comparison.run_on_window(v, newest) for v in versions):
        return newest
    return comparison.shared_run_window(versions, newest) or newest


def _queue_missing(
    request: HttpRequest, versions: list[ModelVersion], window: comparison.CommonWindow
) -> HttpResponse:
    here = request.get_full_path()
    user = staff_user(request)
    if not user.has_perm("models_registry.validate_modelversion"):
        messages.error(request, "Running comparison backtests needs the ML engineer role.")
        return HttpResponseRedirect(here)
    try:
        queued = comparison.comparison_runs_request(
            versions=versions, requested_by=user, window=window
        )
    except comparison.ComparisonRefused as exc:
        messages.error(request, f"nothing queued: {exc}")
        return HttpResponseRedirect(here)
    if queued:
        names = ", ".join(f"{run.model_version} (run #{run.pk})" for run in queued)
        messages.success(request, f"comparison runs queued for {names}: this page refreshes.")
    else:
        messages.info(request, "every version already has a run on this window: nothing queued.")
    return HttpResponseRedirect(here)


def selected_versions(raw_ids: str) -> list[ModelVersion]:
    try:
        ids = [int(part) for part in raw_ids.split(",") if part.strip()]
    except ValueError:
        raise comparison.ComparisonRefused(
            f"the selection {raw_ids!r} is not a list of version ids."
        ) from None
    versions = list(
        ModelVersion.objects.filter(pk__in=ids)
        .select_related("created_by")
        .order_by("name", "version")
    )
    missing = sorted(set(ids) - {v.pk for v in versions})
    if missing:
        raise comparison.ComparisonRefused(f"no model version with id {missing[0]}.")
    return versions


# --- what the page shows ------------------------------------------------------


@dataclass
class Column:
    version: ModelVersion
    colour: str
    run: ValidationRun | None
    curve: dict[str, Any] | None
    failed: ValidationRun | None = None  # a comparison run on the window that could not run

    @property
    def pending(self) -> bool:
        return self.run is not None and self.run.status in comparison.PENDING

    @property
    def finished(self) -> bool:
        return self.run is not None and self.run.status in comparison.FINISHED


def comparison_context(
    versions: Sequence[ModelVersion], window: comparison.CommonWindow
) -> dict[str, Any]:
    columns = []
    for index, version in enumerate(versions):
        run = comparison.run_on_window(version, window)
        finished = run is not None and run.status in comparison.FINISHED
        curve = stored_curve(run) if finished else None
        failed = comparison.failed_attempt(version, window) if run is None else None
        columns.append(Column(version, COLOURS[index % len(COLOURS)], run, curve, failed))
    return {
        "versions": versions,
        "window": window,
        "window_text": window.text() if window.exists else "",
        "window_sentence": window_sentence(versions, window),
        "columns": [_column_head(c) for c in columns],
        "metric_rows": metric_rows(columns),
        "chart": equity_chart(columns, window) if window.exists else "",
        "missing": [c.version for c in columns if window.exists and c.run is None],
        "no_curve": [c for c in columns if c.finished and c.curve is None],
        "pending": [c for c in columns if c.pending],
        "parameter_rows": side_by_side([parameters(v) for v in versions]),
        "lineage_rows": side_by_side([lineage(v, window) for v in versions]),
    }


def window_sentence(versions: Sequence[ModelVersion], window: comparison.CommonWindow) -> str:
    if not window.exists:
        return window.reason
    if window.from_existing_runs:
        return (
            f"Every figure below is from one window, {window.text()}, on which each of these "
            "versions already has a finished run at policy costs, after everything any of them "
            "trained on: nothing was run again for this page."
        )
    latest = max(versions, key=lambda v: window.unseen_from[v.pk])
    seen_until = window.unseen_from[latest.pk] - window.step
    return (
        f"Every figure below is from one window, {window.text()} ({window.days:g} days, the "
        f"validation policy's length): the newest stored stretch that none of these versions "
        f"trained on (the latest of them, {latest}, saw data up to "
        f"{formatting.utc(seen_until.to_pydatetime())})."
    )


def _column_head(column: Column) -> dict[str, Any]:
    run = column.run
    if run is None and column.failed is not None:
        run = column.failed
        reason = (run.error or "no reason recorded").strip().splitlines()[0][:200]
        status = f"run #{run.pk} could not run: {reason}"
    elif run is None:
        status = "no run on this window yet"
    elif column.pending:
        status = f"run #{run.pk} {run.get_status_display().lower()}: pending"
    else:
        kind = "exploratory" if run.exploratory else "policy"
        status = f"run #{run.pk}, {run.get_status_display().lower()} ({kind})"
    return {
        "version": column.version,
        "state": column.version.get_state_display(),
        "colour": column.colour,
        "status": status,
        "run_url": (
            reverse("admin:models_registry_validationrun_change", args=[run.pk]) if run else ""
        ),
        "version_url": reverse(
            "admin:models_registry_modelversion_change", args=[column.version.pk]
        ),
    }


def metric_rows(columns: Sequence[Column]) -> list[dict[str, Any]]:
    rows = []
    for key, label in METRIC_ROWS:
        cells = []
        for column in columns:
            if not column.finished:
                cells.append("pending" if column.pending else formatting.DASH)
                continue
            run = column.run
            assert run is not None
            if key == "buy_and_hold_return":
                value = (run.benchmark_metrics or {}).get("total_return")
                cells.append(formatting.percent(value))
            else:
                cells.append(formatting.metric(key, (run.metrics or {}).get(key)))
        rows.append({"label": label, "cells": cells})
    return rows


# --- curves -------------------------------------------------------------------


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = len(points) / MAX_POINTS
    kept = [points[int(i * stride)] for i in range(MAX_POINTS)]
    return [*kept, points[-1]]


def _series(curve: Mapping[str, Any], key: str) -> list[tuple[float, float]]:
    values = curve.get(key) or []
    stamps = [pd.Timestamp(s).timestamp() for s in curve.get("index") or []]
    return [(t, float(v)) for t, v in zip(stamps, values, strict=False) if v is not None]


def equity_chart(columns: Sequence[Column], window: comparison.CommonWindow) -> SafeString | str:
    """One inline SVG: each version's equity (labelled), buy-and-hold dashed, on one time axis."""
    lines = [
        (f"{c.version} (run #{c.run.pk})", c.colour, _series(c.curve, "strategy"), "")
        for c in columns
        if c.curve is not None and c.run is not None
    ]
    if not lines:
        return ""
    hold_curve = next(c.curve for c in columns if c.curve is not None)
    hold = _series(hold_curve, "buy_and_hold")
    if hold:
        lines.append(("buy and hold (same bars)", HOLD_COLOUR, hold, "6 4"))
    x0 = window.start.timestamp()  # type: ignore[union-attr]
    x1 = window.last_bar.timestamp()  # type: ignore[union-attr]
    ys = [y for _l, _c, points, _d in lines for _t, y in points]
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.01, y1 + 0.01
    span_x = max(x1 - x0, 1.0)

    def xy(t: float, y: float) -> str:
        px = PAD_L + (t - x0) / span_x * (CHART_W - PAD_L - PAD_R)
        py = PAD_T + (y1 - y) / (y1 - y0) * (CHART_H - PAD_T - PAD_B)
        return f"{px:.1f},{py:.1f}"

    polylines = format_html_join(
        "",
        '<polyline class="curve" data-label="{}" fill="none" stroke="{}" stroke-width="1.6"'
        ' stroke-dasharray="{}" points="{}"><title>{}</title></polyline>',
        (
            (label, colour, dash or "none", " ".join(xy(t, y) for t, y in _thin(pts)), label)
            for label, colour, pts, dash in lines
        ),
    )
    legend = format_html_join(
        "",
        '<g class="legend"><rect x="{}" y="{}" width="14" height="3" fill="{}"/>'
        '<text x="{}" y="{}" font-size="12">{}</text></g>',
        (
            (PAD_L + 10, PAD_T + 10 + 16 * i, colour, PAD_L + 30, PAD_T + 15 + 16 * i, label)
            for i, (label, colour, _pts, _dash) in enumerate(lines)
        ),
    )
    return format_html(
        '<svg class="equity-chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"'
        ' viewBox="0 0 {w} {h}" role="img" aria-label="equity curves on {window}">'
        '<rect x="{pl}" y="{pt}" width="{iw}" height="{ih}" fill="none" stroke="#ccc"/>'
        "{ticks}{polylines}{legend}"
        '<text x="{pl}" y="{xb}" font-size="11">{start}</text>'
        '<text x="{xr}" y="{xb}" font-size="11" text-anchor="end">{end}</text></svg>',
        w=CHART_W, h=CHART_H, pl=PAD_L, pt=PAD_T, iw=CHART_W - PAD_L - PAD_R,
        ih=CHART_H - PAD_T - PAD_B, ticks=_y_ticks(y0, y1), polylines=polylines, legend=legend,
        xb=CHART_H - 12, xr=CHART_W - PAD_R, window=window.text(),
        start=formatting.utc(window.start.to_pydatetime()),  # type: ignore[union-attr]
        end=formatting.utc(window.last_bar.to_pydatetime()),  # type: ignore[union-attr]
    )  # fmt: skip


def _y_ticks(y0: float, y1: float) -> SafeString:
    """Five gridlines labelled as returns (equity 1.05 reads +5.00 %)."""
    inner_h = CHART_H - PAD_T - PAD_B
    ticks = []
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        py = PAD_T + (y1 - y) / (y1 - y0) * inner_h
        at, label_at = f"{py:.1f}", f"{py + 4:.1f}"
        ticks.append(
            (PAD_L, at, CHART_W - PAD_R, at, PAD_L - 4, label_at, formatting.percent(y - 1))
        )
    return format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#eee"/>'
        '<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>',
        ticks,
    )


# --- parameters and lineage ---------------------------------------------------


def parameters(version: ModelVersion) -> dict[str, str]:
    """Strategy parameters and training hyper-parameters, flattened to 'group.key' rows."""
    metadata = version.metadata or {}
    rows: dict[str, str] = {"kind": version.kind}
    for key in ("window", "horizon", "objective", "target"):
        if key in metadata:
            rows[f"model.{key}"] = _text(metadata[key])
    rows.update(_flat("strategy", metadata.get("strategy") or {}))
    training = metadata.get("training") or {}
    rows.update(_flat("training", training.get("config") or {}))
    for key in ("epochs_run", "best_epoch"):
        if key in training:
            rows[f"training.{key}"] = _text(training[key])
    if metadata.get("search"):
        rows["search.trials"] = _text(len((metadata["search"] or {}).get("trials") or []))
    return rows


def lineage(version: ModelVersion, window: comparison.CommonWindow) -> dict[str, str]:
    metadata = version.metadata or {}
    data = metadata.get("data") or {}
    features = metadata.get("feature_names") or []
    unseen = window.unseen_from.get(version.pk)
    return {
        "data window": formatting.window(version.data_start, version.data_end),
        "dataset sha256": version.data_content_hash or str(data.get("content_hash") or "—"),
        "features": ", ".join(str(f) for f in features) or formatting.DASH,
        "uses sentiment": _text(metadata.get("uses_sentiment")),
        "fit window": formatting.window(version.fit_start, version.fit_end),
        "selection window": formatting.window(version.selection_start, version.selection_end),
        "first unseen bar": formatting.utc(
            unseen.to_pydatetime() if unseen is not None else version.first_unseen_at
        ),
        "onnx sha256": version.onnx_sha256,
        "created": f"{formatting.utc(version.created_at)} by "
        f"{version.created_by.get_username() if version.created_by else 'nobody recorded'}",
    }


def side_by_side(per_version: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """One row per key across versions; ``differs`` when the versions do not all agree."""
    keys: list[str] = []
    for rows in per_version:
        keys.extend(k for k in rows if k not in keys)
    table = []
    for key in keys:
        cells = [rows.get(key, formatting.DASH) for rows in per_version]
        table.append({"key": key, "cells": cells, "differs": len(set(cells)) > 1})
    return table


def _flat(prefix: str, data: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            yield from _flat(name, value)
        else:
            yield name, _text(value)


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or formatting.DASH
    if isinstance(value, str):
        return value or formatting.DASH
    return formatting.number(value)
