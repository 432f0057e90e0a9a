"""The engine's view of engine.strategies: one target for the newest bar at each close.

The backtester calls `strategy.targets(candles, sentiment)` once over a whole period; the
engine calls the very same strategy object on its rolling history at every close and takes
the newest bar's target, so both decide identically. To keep a decision within a couple of
milliseconds, the strategy is given a predictor that runs the model for the newest bar only
(`predict_latest`) and reports NaN for older bars: enough for strategies whose target at a
bar depends on that bar's prediction (ml_basic, buy_and_hold).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("engine.live")


class StrategyError(ValueError):
    """The named strategy does not exist or cannot be built."""


class LatestPredictor:
    """Wraps a model so that predict() evaluates only the last bar of what it is given."""

    def __init__(self, model: Any) -> None:
        self.model = model
        # The strategy reads its recorded parameters from the version's metadata, as in a backtest.
        self.metadata = getattr(model, "metadata", None)
        self.required_history = int(getattr(model, "required_history", 1))
        self.last: float = math.nan
        self.error: str | None = None

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        import pandas as pd  # the frame path: strategies without a live decider

        self.last, self.error = math.nan, None
        values = np.full(len(candles), np.nan)
        if len(candles) >= self.required_history:
            try:
                self.last = self._latest(candles, sentiment)
            except ValueError as exc:  # engine.features.FeatureError: gaps, missing sentiment
                self.error = str(exc)
            values[-1] = self.last
        return pd.Series(values, index=candles.index, name="prediction")

    def _latest(self, candles: pd.DataFrame, sentiment: pd.Series | None) -> float:
        if hasattr(self.model, "predict_latest"):
            return float(self.model.predict_latest(candles, sentiment))
        return float(self.model.predict(candles, sentiment).iloc[-1])


def build_strategy(
    name: str,
    *,
    model: Any | None,
    fee_bps: float,
    slippage_bps: float,
    **params: Any,
) -> tuple[Any, LatestPredictor | None]:
    """(strategy, the predictor it was given) for strategy `name` from engine.strategies."""
    from engine.strategies import StrategyError as StrategiesError
    from engine.strategies import get_strategy

    predictor = LatestPredictor(model) if model is not None else None
    try:
        strategy = get_strategy(
            name, predictor=predictor, fee_bps=fee_bps, slippage_bps=slippage_bps, **params
        )
    except StrategiesError as exc:
        raise StrategyError(str(exc)) from exc
    return strategy, predictor
