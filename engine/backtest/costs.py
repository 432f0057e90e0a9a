"""Trading costs: the definitions live in engine.costs (the paper engine imports them without
the backtest package); re-exported here for the backtester."""

from engine.costs import BPS, fee, fill_price

__all__ = ["BPS", "fee", "fill_price"]
