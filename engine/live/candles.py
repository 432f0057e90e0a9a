"""One closed candle as the feeds deliver it, and a rolling buffer of recent ones."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

PRICE_FIELDS = ("open", "high", "low", "close")
FRAME_COLUMNS = (*PRICE_FIELDS, "volume")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_ns(moment: datetime) -> int:
    """A UTC moment (datetime or pandas Timestamp) as nanoseconds since the epoch."""
    value = getattr(moment, "value", None)  # a pandas Timestamp's exact nanoseconds
    if isinstance(value, int):
        return value
    return (moment - EPOCH) // _MICROSECOND * 1000


def utc_from_ms(milliseconds: int) -> datetime:
    """Binance's open times (ms since the epoch) as a UTC datetime; no pandas on the live path."""
    return EPOCH + timedelta(milliseconds=milliseconds)


@dataclass(frozen=True)
class Candle:
    open_time: datetime  # UTC, the candle's open (a pandas Timestamp from a frame)
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def key(self) -> str:
        return self.open_time.isoformat()

    def problem(self) -> str | None:
        """Why this candle must not be traded on, or None if it looks sane."""
        values = {f: getattr(self, f) for f in (*PRICE_FIELDS, "volume")}
        for name, value in values.items():
            if not isinstance(value, float) or not math.isfinite(value):
                return f"{name} is not a finite number ({value!r})"
        if min(values[f] for f in PRICE_FIELDS) <= 0:
            return "non-positive price"
        if values["volume"] < 0:
            return "negative volume"
        if self.high < max(self.open, self.close, self.low) or self.low > min(
            self.open, self.close
        ):
            return "high/low do not bound open/close"
        return None


def candles_from_frame(frame: pd.DataFrame) -> list[Candle]:
    """Rows of a candle frame (docs/interfaces.md) as Candle objects, in order."""
    import pandas as pd  # replay and paper-from-CSV only

    missing = [c for c in (*PRICE_FIELDS, "volume") if c not in frame.columns]
    if missing:
        raise ValueError(f"candle frame lacks column(s) {', '.join(missing)}")
    index = pd.DatetimeIndex(frame.index)
    if index.tz is None:
        raise ValueError("candle frame index must be UTC (tz-aware)")
    columns = [frame[c].to_numpy(dtype="float64") for c in (*PRICE_FIELDS, "volume")]
    return [
        Candle(
            open_time=stamp,
            open=float(o),
            high=float(h),
            low=float(lo),
            close=float(c),
            volume=float(v),
        )
        for stamp, o, h, lo, c, v in zip(index, *columns, strict=True)
    ]


class CandleBuffer:
    """The last `size` candles, rebuilt as a frame for the predictor on each bar."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: deque[Candle] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._rows)

    def append(self, candle: Candle) -> None:
        self._rows.append(candle)

    @property
    def last_open_time(self) -> datetime | None:
        return self._rows[-1].open_time if self._rows else None

    def frame(self) -> pd.DataFrame:
        """The strategies' frame path (a strategy without a live decider); imports pandas."""
        import pandas as pd

        # Built from arrays, not from lists of Timestamps and floats: this runs at every close
        # and sits on the candle-to-decision path, where the slow constructors cost ~0.2 ms.
        rows = self._rows
        values = np.array(
            [(c.open, c.high, c.low, c.close, c.volume) for c in rows], dtype="float64"
        ).reshape(len(rows), len(FRAME_COLUMNS))
        open_ns = np.array([epoch_ns(c.open_time) for c in rows], dtype="int64")
        index = pd.DatetimeIndex(open_ns.view("datetime64[ns]"), name="open_time").tz_localize(
            "UTC"
        )
        return pd.DataFrame(values, index=index, columns=list(FRAME_COLUMNS))
