"""Numbers, times and records as a person reads them on an admin page.

Returns and drawdowns are fractions in the engine (0.0123); people read
percentages (1.23 %). A loss of 3e-5 must not print as 0.0000, so values below
one hundredth of a percent keep three significant figures. Timestamps are ISO
8601 in UTC with the zone spelled out. Nothing here reaches the database.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from django.utils.html import format_html, format_html_join

DASH = "—"

# Metric keys that are fractions of equity: shown as percentages.
PERCENT_KEYS = frozenset(
    {
        "total_return",
        "max_drawdown",
        "win_rate",
        "annual_return",
        "cagr",
        "volatility",
        "exposure",
        "equity_relative",
        "hit_rate",
        "psr",
        "dsr",
        "buy_and_hold_return",
        "return_after_costs",
    }
)


def number(value: Any) -> str:
    """A plain number: at most four decimals, three significant figures when small."""
    if value is None or value == "":
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}".rstrip("0").rstrip(".")


def percent(value: Any) -> str:
    """A fraction as a percentage with two decimals; tiny values keep three significant figures."""
    if value is None or value == "" or isinstance(value, bool):
        return DASH
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(fraction) or math.isinf(fraction):
        return str(fraction)
    pct = fraction * 100
    if pct != 0 and abs(pct) < 0.01:
        return f"{pct:.3g} %"
    return f"{pct:.2f} %"


def metric(key: str, value: Any) -> str:
    return percent(value) if key in PERCENT_KEYS else number(value)


def gate_value(name: Any, value: Any) -> str:
    """A gate's value or threshold: drawdown and divergence gates are fractions of equity;
    bar and trade counts are whole numbers (1,440, never 1440.00)."""
    text = str(name or "")
    counted = text.endswith(("_bars", "_trades")) and isinstance(value, int | float)
    if counted and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:,.0f}"
    key = "max_drawdown" if "drawdown" in text or "divergence" in text else text
    return metric(key, value)


def utc(value: Any) -> str:
    """ISO 8601 in UTC, zone included: 2024-03-01T12:00:00+00:00 reads as '2024-03-01 12:00 UTC'."""
    if value is None or value == "":
        return DASH
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def window(start: Any, end: Any) -> str:
    if not start and not end:
        return DASH
    return f"{utc(start)} → {utc(end)}"


def key_value_table(data: Any, *, css_class: str = "kv") -> str:
    """A nested dict or list as HTML tables: nothing a person reads is raw JSON."""
    if data is None or data == {} or data == []:
        return DASH
    if isinstance(data, dict):
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td></tr>",
            (
                (key, _cell(key, value))
                for key, value in sorted(data.items(), key=lambda kv: str(kv[0]))
            ),
        )
        return format_html('<table class="{}">{}</table>', css_class, rows)
    if isinstance(data, list):
        if all(isinstance(item, dict) for item in data):
            columns = sorted({key for item in data for key in item}, key=_column_order)
            head = format_html_join("", "<th>{}</th>", ((c,) for c in columns))
            body = format_html_join(
                "",
                "<tr>{}</tr>",
                (
                    (format_html_join("", "<td>{}</td>", ((_row_cell(item, c),) for c in columns)),)
                    for item in data
                ),
            )
            return format_html('<table class="{}"><tr>{}</tr>{}</table>', css_class, head, body)
        return ", ".join(number(item) for item in data)
    return number(data)


# What a row is and whether it passed come first; the long detail last.
_LEADING_COLUMNS = ("host", "name", "step", "passed", "ok", "result", "status")


def _column_order(key: Any) -> tuple[int, str]:
    text = str(key)
    return (
        _LEADING_COLUMNS.index(text) if text in _LEADING_COLUMNS else len(_LEADING_COLUMNS),
        text,
    )


def _row_cell(item: dict[str, Any], column: Any) -> str:
    """A gate row's value and threshold read by the gate's name (counts, %), not the column's."""
    if column in ("value", "threshold") and "name" in item:
        value = item.get(column)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return gate_value(item["name"], value)
    return _cell(column, item.get(column))


def _cell(key: Any, value: Any) -> str:
    if isinstance(value, dict | list):
        return key_value_table(value)
    if isinstance(key, str) and key.endswith(("_at", "_time")):
        return utc(value)
    return metric(str(key), value)


# Column headers people read: "total return", never "totalreturn" or "total_return".
METRIC_LABELS = {
    "total_return": "return after costs",
    "sharpe": "Sharpe",
    "psr": "PSR",
    "dsr": "DSR",
    "trials": "trials",
    "max_drawdown": "max drawdown",
    "win_rate": "win rate",
    "trades": "trades",
}


def metric_label(key: Any) -> str:
    text = str(key or "")
    return METRIC_LABELS.get(text, text.replace("_", " "))
