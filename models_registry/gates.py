"""Gate thresholds, from settings, with overrides per model name.

``TRADEBOT_GATES`` holds the defaults for each stage; ``TRADEBOT_GATE_OVERRIDES``
maps a model name to partial dicts that replace single thresholds, e.g.
``{"btcusdt_sentiment": {"validation": {"min_sharpe": 0.8}}}``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULT_GATES: dict[str, dict[str, Any]] = {
    # Out-of-sample backtest: ml_basic must earn a positive risk-adjusted return,
    # keep its worst loss bounded and actually trade enough to judge it.
    "validation": {
        "min_sharpe": 0.0,
        "max_drawdown": 0.35,
        "min_trades": 3,
        "min_bars": 24 * 30,
    },
    # Paper trading on bars the model never saw.
    "paper": {
        "min_bars": 24 * 14,
        "max_drawdown": 0.35,
        "max_divergence": 0.01,
    },
    # Scheduled re-validation: the same validation gates, plus drift against the baseline.
    "drift": {
        "max_sharpe_drop": 1.0,
        "max_hit_rate_drop": 0.10,
        "max_drawdown": 0.35,
        "max_live_divergence": 0.01,
    },
}


def gates_for(model_name: str, stage: str) -> dict[str, Any]:
    if stage not in DEFAULT_GATES:
        raise KeyError(f"unknown gate stage {stage!r}; known: {', '.join(DEFAULT_GATES)}")
    configured = getattr(settings, "TRADEBOT_GATES", {}) or {}
    overrides = (getattr(settings, "TRADEBOT_GATE_OVERRIDES", {}) or {}).get(model_name, {})
    return {**DEFAULT_GATES[stage], **configured.get(stage, {}), **overrides.get(stage, {})}
