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


class CentredRollingPredictor:
    """Leaky: a rolling mean of returns centred on the bar, so half of it lies in the future."""

    metadata = None

    def __init__(self, window: int = 25) -> None:
        self.window = window

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        returns = np.log(candles["close"]).diff()
        return returns.rolling(self.window, center=True).mean().rename("prediction")


class FullSampleReturnZScorePredictor:
    """Leaky: the last return z-scored with the mean and std of every return in the frame."""

    metadata = None

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        returns = np.log(candles["close"]).diff()
        return ((returns - returns.mean()) / returns.std() * 1e-3).rename("prediction")


class LaterDaySentimentPredictor:
    """Leaky: trades on the next day's Fear & Greed value, published a day after that."""

    metadata = None

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        assert sentiment is not None, "this fake reads sentiment"
        later = sentiment.reindex(candles.index.floor("D") + pd.Timedelta(days=1))
        return pd.Series((later.to_numpy() - 50.0) * 1e-4, index=candles.index, name="prediction")


class PublishedSentimentMomentumPredictor:
    """Causal: the last return plus the latest published sentiment (the engine's own join)."""

    metadata = None

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        from engine.data.join import close_times_ns, sentiment_at_closes, utc_ns

        returns = np.log(candles["close"]).diff()
        # A causal z-score: only the past 48 bars' statistics.
        z = (returns - returns.rolling(48).mean()) / returns.rolling(48).std()
        known = sentiment_at_closes(close_times_ns(utc_ns(candles.index), "1h"), sentiment)
        return (z * 1e-3 + (known - 50.0) * 1e-5).rename("prediction")
