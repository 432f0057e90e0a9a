"""Small candle frames for backtest tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_candles(opens, highs, lows, closes, *, freq: str = "1h") -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=len(opens), freq=freq, tz="UTC", name="open_time")
    return pd.DataFrame(
        {"open": opens, "high": highs, "low": lows, "close": closes, "volume": 1.0},
        index=index,
        dtype=np.float64,
    )


def random_candles(
    n: int, seed: int, *, volatility: float = 0.01, freq: str = "1h"
) -> pd.DataFrame:
    """A random walk with gaps between close and next open, so stops can be jumped over."""
    rng = np.random.default_rng(seed)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0, volatility, n)))
    opens = np.concatenate(([100.0], closes[:-1])) * np.exp(rng.normal(0, volatility / 3, n))
    spread = np.abs(rng.normal(0, volatility, (2, n)))
    highs = np.maximum(opens, closes) * (1 + spread[0])
    lows = np.minimum(opens, closes) * (1 - spread[1])
    return make_candles(opens, highs, lows, closes, freq=freq)
