"""ml_basic: long when the model's predicted next-bar return beats its round-trip cost.

Target at bar t = 1.0 when ``prediction[t] - round_trip_cost > threshold``, else 0.0.
The round-trip cost is two fills' fee and slippage, as a fraction (about a log return at these
sizes). No prediction (warm-up, NaN) means flat: the strategy never guesses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.strategies.base import Predictor, StrategyError


def round_trip_cost(fee_bps: float, slippage_bps: float) -> float:
    """Expected cost of entering and leaving once, as a fraction of the position."""
    return 2.0 * (fee_bps + slippage_bps) * 1e-4  # bps as in engine.backtest.costs


class MlBasic:
    name = "ml_basic"

    def __init__(
        self,
        predictor: Predictor,
        *,
        fee_bps: float = 10.0,
        slippage_bps: float = 5.0,
        threshold: float = 0.0,
    ) -> None:
        if predictor is None or not callable(getattr(predictor, "predict", None)):
            raise StrategyError("ml_basic needs a model: pass a predictor with a predict() method")
        if not np.isfinite(threshold):
            raise StrategyError(f"ml_basic threshold must be a finite number, got {threshold}")
        self.predictor = predictor
        self.cost = round_trip_cost(fee_bps, slippage_bps)
        self.threshold = float(threshold)
        self.last_predictions: pd.Series | None = None

    def targets(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        predictions = self.predictor.predict(candles, sentiment)
        if not isinstance(predictions, pd.Series) or not predictions.index.equals(candles.index):
            raise StrategyError("predictor.predict must return a Series indexed like the candles")
        self.last_predictions = predictions
        net = predictions.to_numpy(dtype=np.float64) - self.cost
        with np.errstate(invalid="ignore"):
            long = net > self.threshold  # NaN compares False: flat during warm-up
        return pd.Series(long.astype(np.float64), index=candles.index, name="target")
