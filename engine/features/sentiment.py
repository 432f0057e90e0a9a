"""Joining the daily Fear & Greed value to candles, with its publication lag."""

from __future__ import annotations

import pandas as pd

from engine.features.params import SENTIMENT_FEATURE

# A missing day or two in the published index is normal (the real series has
# gaps of 2 and 4 days); a value older than this is treated as missing.
MAX_SENTIMENT_AGE = pd.Timedelta(days=7)


def sentiment_for_candles(candles: pd.DataFrame, sentiment: pd.Series) -> pd.Series:
    """The Fear & Greed value usable at each candle, aligned to the candle index (NaN if none).

    engine.data.join_sentiment is the project's one join (docs/interfaces.md);
    until that module exists the local equivalent below applies the same rule.
    """
    try:
        from engine.data import join_sentiment
    except ImportError:
        join_sentiment = None
    if join_sentiment is None:
        return _join_with_publication_lag(candles, sentiment)
    joined = join_sentiment(candles, sentiment)
    if isinstance(joined, pd.DataFrame):
        joined = joined[SENTIMENT_FEATURE]
    return joined.reindex(candles.index).astype("float64").rename(SENTIMENT_FEATURE)


def _join_with_publication_lag(candles: pd.DataFrame, sentiment: pd.Series) -> pd.Series:
    """A day's value becomes usable at the end of that day, i.e. from midnight of the next day.

    A candle gets the latest value usable at its open, so nothing published
    after the candle closed can reach it.
    """
    values = sentiment.dropna().astype("float64").sort_index()
    usable = pd.DataFrame(
        {SENTIMENT_FEATURE: values.to_numpy()},
        index=pd.DatetimeIndex(values.index).as_unit("ns") + pd.Timedelta(days=1),
    )
    usable.index.name = "usable_from"
    bars = pd.DataFrame(index=pd.DatetimeIndex(candles.index).as_unit("ns"))
    bars.index.name = "bar"
    joined = pd.merge_asof(
        bars,
        usable,
        left_index=True,
        right_index=True,
        direction="backward",
        tolerance=MAX_SENTIMENT_AGE,
    )
    return pd.Series(
        joined[SENTIMENT_FEATURE].to_numpy(), index=candles.index, name=SENTIMENT_FEATURE
    )
