"""Tiny predictors with the same predict() as engine.inference.OnnxPredictor."""

from __future__ import annotations

import numpy as np
import pandas as pd


class MomentumPredictor:
    """Causal: predicts the last bar's log return, NaN for the first `warmup` bars."""

    def __init__(self, warmup: int = 5, metadata: dict | None = None) -> None:
        self.warmup = warmup
        self.metadata = metadata

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        values = np.log(candles["close"]).diff()
        values.iloc[: self.warmup] = np.nan
        return values.rename("prediction")


class PeekingPredictor:
    """Leaky: 'predicts' the next bar's actual return by reading the next close."""

    metadata = None

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        return np.log(candles["close"].shift(-1) / candles["close"]).rename("prediction")


class FullSampleZScorePredictor:
    """Leaky in a quieter way: normalises with the mean and std of the whole frame."""

    metadata = None

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        close = candles["close"]
        return ((close - close.mean()) / close.std() * 1e-3).rename("prediction")
