"""The one join of sentiment onto candles, with the index's publication lag."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.data.frames import SENTIMENT_NAME
from engine.data.intervals import interval_timedelta

DEFAULT_MAX_AGE = pd.Timedelta(days=7)


def join_sentiment(
    candles: pd.DataFrame,
    sentiment: pd.Series,
    *,
    interval: str | None = None,
    max_age: pd.Timedelta | None = DEFAULT_MAX_AGE,
) -> pd.DataFrame:
    """``candles`` with a ``fear_greed`` column holding the latest value known at each close.

    A day's value describes the whole UTC day, so it is usable only from the
    end of that day (the next midnight). A candle sees it only if the candle
    closes at or after that midnight; earlier candles see the previous day's
    value. ``max_age`` bounds how long a value is carried over missing days
    (counted from when it became usable); older means NaN, so a feed outage
    shows up instead of repeating a stale value. None carries it forever.
    """
    out = candles.copy()
    if out.empty:
        out[SENTIMENT_NAME] = pd.Series(dtype="float64")
        return out
    closes = _close_times(candles, interval)
    usable_from = pd.DatetimeIndex(sentiment.index).tz_convert("UTC") + pd.Timedelta(days=1)
    right = pd.DataFrame(
        {"usable_from": usable_from, SENTIMENT_NAME: sentiment.to_numpy(dtype="float64")}
    ).sort_values("usable_from")
    left = pd.DataFrame({"close": closes, "position": np.arange(len(closes))}).sort_values("close")
    joined = pd.merge_asof(
        left,
        right,
        left_on="close",
        right_on="usable_from",
        direction="backward",
        allow_exact_matches=True,
        tolerance=max_age,
    ).sort_values("position")
    out[SENTIMENT_NAME] = joined[SENTIMENT_NAME].to_numpy()
    return out


def _close_times(candles: pd.DataFrame, interval: str | None) -> pd.DatetimeIndex:
    """When each candle closes: open + interval (given, or inferred from the usual step)."""
    index = pd.DatetimeIndex(candles.index).tz_convert("UTC")
    if interval is not None:
        return index + interval_timedelta(interval)
    if len(index) < 2:
        raise ValueError("join_sentiment: pass interval= for fewer than two candles")
    steps = pd.Series(np.diff(index.asi8)).value_counts()
    return index + pd.Timedelta(int(steps.index[0]))
