"""The shipped gate thresholds and validation policy: constants, importing nothing of ours
but the engine's defaults, so the policy's readers and writers can all read them without an
import circle (``gates`` re-exports them under their old names).
"""

from __future__ import annotations

from typing import Any

from engine.backtest.deflated import DEFAULT_DSR_BENCHMARK
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
    "refit_folds": 3,
    "fold_days": 290,
    # What skill is measured against: the DSR deflates the Sharpe ratio of the per-bar returns
    # in excess of this benchmark's (engine.backtest.deflated.DSR_BENCHMARKS), so riding the
    # market earns nothing. "cash" (the strategy's own returns) is looser and shown as such.
    "dsr_benchmark": DEFAULT_DSR_BENCHMARK,
}
