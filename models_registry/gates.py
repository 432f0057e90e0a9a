"""The shipped gate thresholds and validation policy, and readers of the policy in force.

The policy in force is data in the registry (``models_registry.policy``, changed only by the
four-eyes transitions of ``services.policies``). ``DEFAULT_GATES`` and
``DEFAULT_VALIDATION_POLICY`` are the shipped defaults it is seeded from and measured
against. The environment (``TRADEBOT_GATES``, ``TRADEBOT_GATE_OVERRIDES``,
``TRADEBOT_VALIDATION_POLICY``, ``TRADEBOT_VALIDATION_POLICY_OVERRIDES``) may seed the
first policy when the registry is first used, and nothing more: a process whose
environment disagrees with the policy in force makes only exploratory runs.
"""

from __future__ import annotations

from typing import Any

from engine.backtest.gates import DEFAULT_GATES as ENGINE_VALIDATION_GATES
from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS

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
    """The thresholds of ``stage`` in the policy in force for ``model_name``."""
    from models_registry.policy import policy_in_force, stage_gates

    if stage not in DEFAULT_GATES:
        raise KeyError(f"unknown gate stage {stage!r}; known: {', '.join(DEFAULT_GATES)}")
    return stage_gates(policy_in_force(model_name), stage)


# Costs and window of a gated validation: policy, never the validating person's choice.
# ``end`` (ISO date, optional) caps the window. The costs are the engine's one documented
# plain-Python default (``engine/costs.py``); the registry reads costs only from the policy
# in force (``models_registry.policy.CostPolicy``), which these seed.
DEFAULT_VALIDATION_POLICY: dict[str, Any] = {
    "fee_bps": DEFAULT_FEE_BPS,
    "slippage_bps": DEFAULT_SLIPPAGE_BPS,
    "days": 90,  # the guide's 90 out-of-sample days
    "end": None,
    # Walk-forward evidence re-fitted per fold (#28; models_registry/services/walk_forward.py):
    # K folds of fold_days ending where the policy window ends, each a model trained with the
    # version's own configuration on the bars before it. 0: the single policy window.
    "refit_folds": 0,
    "fold_days": 90,
}


def validation_policy_for(model_name: str) -> dict[str, Any]:
    """Costs and window (``fee_bps``, ``slippage_bps``, ``days``, ``end``) in force."""
    from models_registry.policy import policy_in_force, window_policy

    return window_policy(policy_in_force(model_name))
