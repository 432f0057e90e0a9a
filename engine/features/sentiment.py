"""Joining the daily Fear & Greed value to candles, with its publication lag."""

from __future__ import annotations

import pandas as pd

from engine.data import join_sentiment
from engine.features.params import SENTIMENT_FEATURE


def sentiment_for_candles(candles: pd.DataFrame, sentiment: pd.Series) -> pd.Series:
    """The Fear & Greed value usable at each candle's close, aligned to the candles (NaN if none).

    engine.data.join_sentiment is the project's one join (docs/interfaces.md):
    a day's value is usable only from the end of that day, and a value too
    old to trust comes out as NaN.
    """
    joined = join_sentiment(candles, sentiment)
    return joined[SENTIMENT_FEATURE].astype("float64").rename(SENTIMENT_FEATURE)
