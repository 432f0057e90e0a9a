"""Trading costs, shared by the backtester and the live paper broker, and the engine's one
plain-Python default cost, in basis points of a fill's notional.

Kept tiny and stable: the paper broker imports these so that paper trading and the
backtest charge exactly the same costs. Outside engine.backtest, whose package imports
pandas, so that the paper engine starts without it; engine.backtest.costs re-exports them.

The defaults are used where the engine runs without the registry (a script,
``python -m engine.live`` on a model folder without a ``<name>_costs.json`` and without
``--fee-bps``, a test). The registry never relies on them: validation, paper runs,
monitoring and the hosts take their costs from the validation policy in force
(``models_registry.policy.CostPolicy``), which is seeded from these values; a deploy ships
them to the host as ``<name>_costs.json`` (engine.live.config.resolve_costs).
"""

from __future__ import annotations

BPS = 1e-4  # one basis point as a fraction
DEFAULT_FEE_BPS = 10.0  # Binance spot taker fee, 0.1%
DEFAULT_SLIPPAGE_BPS = 5.0  # half a typical BTCUSDT hourly spread plus impact, 0.05%


def fill_price(open_price: float, side: int, slippage_bps: float) -> float:
    """The price a market order fills at: the reference price moved against the trade.

    `side` is +1 for a buy and -1 for a sell; a buy pays more, a sell receives less.
    """
    if side not in (1, -1):
        raise ValueError(f"side must be +1 (buy) or -1 (sell), got {side!r}")
    if slippage_bps < 0:
        raise ValueError(f"slippage_bps must be >= 0, got {slippage_bps}")
    return float(open_price) * (1.0 + side * slippage_bps * BPS)


def fee(notional: float, fee_bps: float) -> float:
    """The fee charged on one fill: a rate of the traded notional (price x quantity, unsigned)."""
    if fee_bps < 0:
        raise ValueError(f"fee_bps must be >= 0, got {fee_bps}")
    return abs(float(notional)) * fee_bps * BPS
