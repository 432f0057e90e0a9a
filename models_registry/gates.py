"""Gate thresholds, from settings, with overrides per model name.

``TRADEBOT_GATES`` holds the defaults for each stage; ``TRADEBOT_GATE_OVERRIDES``
maps a model name to partial dicts that replace single thresholds, e.g.
``{"btcusdt_sentiment": {"validation": {"min_sharpe": 0.8}}}``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from engine.backtest.gates import DEFAULT_GATES as ENGINE_VALIDATION_GATES

DEFAULT_GATES: dict[str, dict[str, Any]] = {
    # Out-of-sample backtest on the policy window: a Sharpe ratio that survives deflation for
    # every counted trial (DSR >= 0.95), a positive return after costs that beats buy-and-hold
    # and always-flat on the same bars, a bounded worst loss, and enough trades and bars to
    # judge. One rule set with the engine's; explained in docs/backtest.md.
    "validation": dict(ENGINE_VALIDATION_GATES),
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


# Costs and window of a gated validation: policy, never the validating person's choice.
# ``TRADEBOT_VALIDATION_POLICY`` replaces defaults for every model;
# ``TRADEBOT_VALIDATION_POLICY_OVERRIDES`` maps a model name to single replacements, e.g.
# ``{"btcusdt_sentiment": {"fee_bps": 7.5}}``. ``end`` (ISO date, optional) caps the window.
DEFAULT_VALIDATION_POLICY: dict[str, Any] = {
    "fee_bps": 10.0,
    "slippage_bps": 5.0,
    "days": 90,  # the guide's 90 out-of-sample days
    "end": None,
    # Walk-forward evidence re-fitted per fold (#28; models_registry/services/walk_forward.py):
    # K folds of fold_days ending where the policy window ends, each a model trained with the
    # version's own configuration on the bars before it. 0: the single policy window.
    "refit_folds": 0,
    "fold_days": 90,
}


def validation_policy_for(model_name: str) -> dict[str, Any]:
    configured = getattr(settings, "TRADEBOT_VALIDATION_POLICY", {}) or {}
    overrides = (getattr(settings, "TRADEBOT_VALIDATION_POLICY_OVERRIDES", {}) or {}).get(
        model_name, {}
    )
    policy = {**DEFAULT_VALIDATION_POLICY, **configured, **overrides}
    unknown = sorted(set(policy) - set(DEFAULT_VALIDATION_POLICY))
    if unknown:
        raise KeyError(f"unknown validation policy key(s) {unknown} for {model_name!r}")
    return policy
