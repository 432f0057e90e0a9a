"""Drift rules: what a scheduled run's metrics say against the version's baseline, against
its production journals, and (for the weekly report) how stable the walk-forward parts are.
Pure functions over metrics; they return gate-shaped results."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def _number(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rule(name: str, passed: bool, value: Any, threshold: Any, detail: str) -> dict[str, Any]:
    return {
        "name": name,
        "passed": bool(passed),
        "value": value,
        "threshold": threshold,
        "metric": name.removeprefix("drift_"),
        "detail": detail,
    }


def drift_rules(
    metrics: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    gates: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Gate-shaped results of the drift rules: drops against the baseline, a drawdown limit."""
    results: list[dict[str, Any]] = []
    baseline = baseline or {}
    for name, key, limit_key in (
        ("drift_sharpe_drop", "sharpe", "max_sharpe_drop"),
        ("drift_hit_rate_drop", "win_rate", "max_hit_rate_drop"),
    ):
        if limit_key not in gates:
            continue
        limit = float(gates[limit_key])
        now, then = _number(metrics, key), _number(baseline, key)
        if key == "win_rate" and not _number(metrics, "n_trades"):
            # No trade closed in the window: there is no hit rate to compare (min_trades judges it).
            results.append(_rule(name, True, None, limit, "no trades in the window"))
            continue
        if now is None or then is None:
            results.append(
                _rule(name, True, None, limit, f"{key} missing from the run or its baseline")
            )
            continue
        drop = then - now
        results.append(
            _rule(name, drop <= limit, drop, limit, f"{key} {then:.4g} at baseline, {now:.4g} now")
        )
    if "max_drawdown" in gates:
        limit = float(gates["max_drawdown"])
        drawdown = _number(metrics, "max_drawdown")
        passed = drawdown is None or drawdown <= limit
        results.append(
            _rule("drift_max_drawdown", passed, drawdown, limit, "drawdown in the window")
        )
    return results


def live_rule(live: Mapping[str, Any], gates: Mapping[str, Any]) -> dict[str, Any] | None:
    """Fail when any production journal diverges from the backtest beyond the tolerance."""
    if "max_live_divergence" not in gates:
        return None
    limit = float(gates["max_live_divergence"])
    compared = [c for c in live.get("comparisons", []) if c.get("compared")]
    if not compared:
        return None
    worst = max(compared, key=lambda c: c["divergence"])
    return _rule(
        "drift_live_divergence",
        worst["divergence"] <= limit,
        worst["divergence"],
        limit,
        f"worst: {worst.get('target')} {worst.get('host')} {worst.get('file')}",
    )


def walk_forward_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """How stable the parts are: their Sharpe spread and how many made money."""
    parts = list(metrics.get("walk_forward") or [])
    sharpes = [
        s for s in (_number(p.get("metrics") or p, "sharpe") for p in parts) if s is not None
    ]
    returns = [
        r for r in (_number(p.get("metrics") or p, "total_return") for p in parts) if r is not None
    ]
    return {
        "parts": len(parts),
        "sharpe_mean": float(np.mean(sharpes)) if sharpes else None,
        "sharpe_std": float(np.std(sharpes)) if sharpes else None,
        "sharpe_min": min(sharpes) if sharpes else None,
        "profitable_parts": sum(1 for r in returns if r > 0),
    }
