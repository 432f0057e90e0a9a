"""Validation gates: thresholds a backtest's metrics must meet, each reported pass or fail."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from engine.backtest.errors import BacktestError
from engine.backtest.guards import NOT_APPLICABLE, OUT_OF_SAMPLE

# Same defaults as the registry's validation stage (models_registry/gates.py); a caller passes
# the configured dict, these apply to plain-Python use. Each is explained for approvers in
# docs/backtest.md, "The gates, one by one".
DEFAULT_GATES: dict[str, float] = {
    # Deflated Sharpe ratio (Bailey & López de Prado 2014): the probability that the Sharpe
    # ratio beats the best that the counted trials would reach by luck. Supersedes a bare
    # min_sharpe of 0, which a random strategy passes in about a third of windows.
    "min_dsr": 0.95,
    "total_return_above": 0.0,  # after costs, strictly more than nothing
    "beats_buy_and_hold_by": 0.0,  # total return minus buy-and-hold's, strictly above
    "beats_always_flat_by": 0.0,  # total return minus always-flat's (0: no trade, no cost)
    "max_drawdown": 0.35,
    "min_trades": 3,
    "min_bars": 24 * 30,
}

AT_LEAST, AT_MOST, ABOVE = ">=", "<=", ">"
_COMPARE = {
    AT_LEAST: lambda value, threshold: value >= threshold,
    AT_MOST: lambda value, threshold: value <= threshold,
    ABOVE: lambda value, threshold: value > threshold,
}

# gate name -> (metric it reads, how the metric compares with the threshold)
GATE_RULES: dict[str, tuple[str, str]] = {
    "min_sharpe": ("sharpe", AT_LEAST),
    "min_sortino": ("sortino", AT_LEAST),
    "min_calmar": ("calmar", AT_LEAST),
    "min_total_return": ("total_return", AT_LEAST),
    "total_return_above": ("total_return", ABOVE),
    "min_cagr": ("cagr", AT_LEAST),
    "max_drawdown": ("max_drawdown", AT_MOST),
    "max_drawdown_days": ("max_drawdown_duration_days", AT_MOST),
    "min_trades": ("n_trades", AT_LEAST),
    "min_win_rate": ("win_rate", AT_LEAST),
    "min_profit_factor": ("profit_factor", AT_LEAST),
    "min_bars": ("n_bars", AT_LEAST),
    "min_excess_return": ("excess_return", AT_LEAST),  # total return minus buy-and-hold's
    "beats_buy_and_hold_by": ("excess_return", ABOVE),
    "beats_always_flat_by": ("excess_over_flat", ABOVE),
    "min_psr": ("psr", AT_LEAST),  # probabilistic Sharpe ratio against buy-and-hold's
    "min_dsr": ("dsr", AT_LEAST),
    "min_random_percentile": ("random_percentile", AT_LEAST),  # vs random long/flat, in %
}

# Metrics that may be missing (None) with a reason: their gate fails and says why.
_REASON_KEYS = {"psr": "significance_reason", "dsr": "significance_reason"}


@dataclass(frozen=True)
class GateResult:
    name: str
    metric: str
    threshold: float | None
    value: float | str | None
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _metric_value(metrics: Mapping[str, Any], metric: str) -> float | None:
    """The metric a gate reads; None when it could not be computed (the gate then fails)."""
    if metric == "excess_return":
        return float(metrics["total_return"] - metrics["buy_and_hold"]["total_return"])
    if metric == "excess_over_flat":
        flat = (metrics.get("baselines") or {}).get("always_flat", {}).get("total_return", 0.0)
        return float(metrics["total_return"] - flat)
    if metric == "random_percentile":
        random = (metrics.get("baselines") or {}).get("random_long_flat") or {}
        value = random.get("model_percentile")
        return None if value is None else float(value)
    value = metrics.get(metric)
    return None if value is None else float(value)


def _gate_result(name: str, threshold: float, metrics: Mapping[str, Any]) -> GateResult:
    metric, how = GATE_RULES[name]
    value = _metric_value(metrics, metric)
    if value is None or math.isnan(value):
        reason = metrics.get(_REASON_KEYS.get(metric, ""), "") or "not computed"
        return GateResult(
            name,
            metric,
            float(threshold),
            None,
            False,
            f"{metric} could not be computed ({reason}): the gate fails",
        )
    return GateResult(
        name,
        metric,
        float(threshold),
        value,
        bool(_COMPARE[how](value, threshold)),
        f"{metric} = {value:.6g}, needs {how} {threshold:g}",
    )


def evaluate_gates(
    metrics: Mapping[str, Any],
    gates: Mapping[str, float] | None = None,
    *,
    sample_status: str = OUT_OF_SAMPLE,
) -> list[GateResult]:
    """One result per gate, plus an `out_of_sample` gate that only a clean window passes.

    Unknown gate names are refused (a typo must not silently disable a gate); a gate set to
    None is skipped. A NaN or uncomputable metric (a DSR over too few returns) fails its gate.
    """
    gates = DEFAULT_GATES if gates is None else gates
    unknown = sorted(set(gates) - set(GATE_RULES))
    if unknown:
        raise BacktestError(f"unknown gate(s) {unknown}; known gates: {sorted(GATE_RULES)}")
    results = [
        _gate_result(name, threshold, metrics)
        for name, threshold in gates.items()
        if threshold is not None
    ]
    clean = sample_status in (OUT_OF_SAMPLE, NOT_APPLICABLE)
    results.append(
        GateResult(
            "out_of_sample",
            "sample_status",
            None,
            sample_status,
            clean,
            "window is after the model's training data"
            if clean
            else f"run is {sample_status}: it cannot pass validation",
        )
    )
    return results


def gates_passed(results: list[GateResult]) -> bool:
    return all(r.passed for r in results)
