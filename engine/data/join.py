"""The one join of sentiment onto candles, with the index's publication lag.

`sentiment_at_closes` is the join itself, over plain arrays of close times, so the live
engine can join just the bars it needs; `join_sentiment` applies it to a candle frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.data.frames import SENTIMENT_NAME
from engine.data.intervals import interval_timedelta

DEFAULT_MAX_AGE = pd.Timedelta(days=7)
_DAY_NS = pd.Timedelta(days=1).value


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
    closes = close_times_ns(utc_ns(candles.index), interval)
    out[SENTIMENT_NAME] = sentiment_at_closes(closes, sentiment, max_age=max_age)
    return out


def sentiment_at_closes(
    close_ns: np.ndarray,
    sentiment: pd.Series,
    *,
    max_age: pd.Timedelta | None = DEFAULT_MAX_AGE,
) -> np.ndarray:
    """The value usable at each close time (int64 ns since the epoch, UTC); NaN where none is.

    The rules are join_sentiment's: a day's value is usable from the next midnight, the
    latest usable value wins, and one older than ``max_age`` is not used.
    """
    closes = np.asarray(close_ns, dtype="int64")
    if sentiment.empty:
        return np.full(len(closes), np.nan)
    usable_from = utc_ns(sentiment.index) + _DAY_NS
    values = sentiment.to_numpy(dtype="float64")
    order = np.argsort(usable_from, kind="stable")
    usable_from, values = usable_from[order], values[order]
    # Last value whose usable_from <= close: an exact match (close at midnight) counts.
    latest = np.searchsorted(usable_from, closes, side="right") - 1
    found = latest >= 0
    picked = np.where(found, latest, 0)
    if max_age is not None:
        found &= closes - usable_from[picked] <= max_age.value
    return np.where(found, values[picked], np.nan)


def utc_ns(index: pd.Index) -> np.ndarray:
    """A tz-aware DatetimeIndex as int64 nanoseconds since the epoch, whatever its unit."""
    if not isinstance(index, pd.DatetimeIndex):
        index = pd.DatetimeIndex(index)
    if index.tz is None:
        raise TypeError("expected a tz-aware (UTC) DatetimeIndex, got a tz-naive one")
    # asi8 of a tz-aware index counts from the epoch in UTC whatever the zone: no conversion.
    return index.as_unit("ns").asi8


def close_times_ns(open_ns: np.ndarray, interval: str | None = None) -> np.ndarray:
    """When each candle closes: open + interval (given, or inferred from the usual step)."""
    if interval is not None:
        return open_ns + interval_timedelta(interval).value
    if len(open_ns) < 2:
        raise ValueError("join_sentiment: pass interval= for fewer than two candles")
    return open_ns + _usual_step_ns(open_ns)


def _usual_step_ns(open_ns: np.ndarray) -> int:
    """The most common gap between candles; on a tie, the one seen first."""
    steps, first_seen, counts = np.unique(np.diff(open_ns), return_index=True, return_counts=True)
    most = counts == counts.max()
    return int(steps[most][np.argmin(first_seen[most])])
