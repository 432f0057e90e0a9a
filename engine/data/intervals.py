"""Binance kline intervals as durations."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# Binance's fixed-length intervals. "1M" (a calendar month) has no fixed length
# and is not supported by the store, whose gap checks need a constant step.
_INTERVAL_SECONDS: dict[str, int] = {
    "1s": 1,
    "1m": 60,
    "3m": 3 * 60,
    "5m": 5 * 60,
    "15m": 15 * 60,
    "30m": 30 * 60,
    "1h": 3600,
    "2h": 2 * 3600,
    "4h": 4 * 3600,
    "6h": 6 * 3600,
    "8h": 8 * 3600,
    "12h": 12 * 3600,
    "1d": 86400,
    "3d": 3 * 86400,
    "1w": 7 * 86400,
}

SUPPORTED_INTERVALS = tuple(_INTERVAL_SECONDS)


def interval_timedelta(interval: str) -> pd.Timedelta:
    """The length of one candle; raises ValueError naming the supported intervals."""
    import pandas as pd

    return pd.Timedelta(interval_step(interval))


def interval_step(interval: str) -> timedelta:
    """interval_timedelta without pandas (the live engine); the same ValueError."""
    try:
        return timedelta(seconds=_INTERVAL_SECONDS[interval])
    except KeyError:
        raise ValueError(
            f"unsupported interval {interval!r}; use one of {', '.join(SUPPORTED_INTERVALS)}"
        ) from None


def interval_ms(interval: str) -> int:
    return int(interval_step(interval).total_seconds() * 1000)
