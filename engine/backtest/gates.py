"""Validation gates: thresholds a backtest's metrics must meet, each reported pass or fail."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from engine.backtest.errors import BacktestError
from engine.backtest.guards import NOT_APPLICABLE, OUT_OF_SAMPLE

# Same defaults as the registry's validation stage (models_registry/gates.py); a caller passes
# the configured dict, these apply to plain-Python use.
DEFAULT_GATES: dict[str, float] = {
    "min_sharpe": 0.0,
    "max_drawdown": 0.35,
    "min_trades": 3,
    "min_bars": 24 * 30,
}

# gate name -> (metric it reads, True if the metric must be >= the threshold, else <=)
GATE_RULES: dict[str, tuple[str, bool]] = {
    "min_sharpe": ("sharpe", True),
    "min_sortino": ("sortino", True),
    "min_calmar": ("calmar", True),
    "min_total_return": ("total_return", True),
    "min_cagr": ("cagr", True),
    "max_drawdown": ("max_drawdown", False),
    "max_drawdown_days": ("max_drawdown_duration_days", False),
    "min_trades": ("n_trades", True),
    "min_win_rate": ("win_rate", True),
    "min_profit_factor": ("profit_factor", True),
    "min_bars": ("n_bars", True),
    "min_excess_return": ("excess_return", True),  # total return minus buy-and-hold's
}


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


def _metric_value(metrics: Mapping[str, Any], metric: str) -> float:
    if metric == "excess_return":
        return metrics["total_return"] - metrics["buy_and_hold"]["total_return"]
    return float(metrics[metric])


def evaluate_gates(
    metrics: Mapping[str, Any],
    gates: Mapping[str, float] | None = None,
    *,
    sample_status: str = OUT_OF_SAMPLE,
) -> list[GateResult]:
    """One result per gate, plus an `out_of_sample` gate that only a clean window passes.

    Unknown gate names are refused (a typo must not silently disable a gate); a gate set to
    None is skipped. A NaN metric fails its gate.
    """
    gates = DEFAULT_GATES if gates is None else gates
    unknown = sorted(set(gates) - set(GATE_RULES))
    if unknown:
        raise BacktestError(f"unknown gate(s) {unknown}; known gates: {sorted(GATE_RULES)}")
    results = []
    for name, threshold in gates.items():
        if threshold is None:
            continue
        metric, at_least = GATE_RULES[name]
        value = _metric_value(metrics, metric)
        passed = (value >= threshold) if at_least else (value <= threshold)
        passed = passed and not math.isnan(value)
        sign = ">=" if at_least else "<="
        results.append(
            GateResult(
                name,
                metric,
                float(threshold),
                value,
                passed,
                f"{metric} = {value:.6g}, needs {sign} {threshold:g}",
            )
        )
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
