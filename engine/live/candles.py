"""One closed candle as the feeds deliver it, and a rolling buffer of recent ones."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

PRICE_FIELDS = ("open", "high", "low", "close")
FRAME_COLUMNS = (*PRICE_FIELDS, "volume")


@dataclass(frozen=True)
class Candle:
    open_time: pd.Timestamp  # UTC, the candle's open (the frame's index)
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
    def last_open_time(self) -> pd.Timestamp | None:
        return self._rows[-1].open_time if self._rows else None

    def frame(self) -> pd.DataFrame:
        # Built from arrays, not from lists of Timestamps and floats: this runs at every close
        # and sits on the candle-to-decision path, where the slow constructors cost ~0.2 ms.
        rows = self._rows
        values = np.array(
            [(c.open, c.high, c.low, c.close, c.volume) for c in rows], dtype="float64"
        ).reshape(len(rows), len(FRAME_COLUMNS))
        open_ns = np.array([c.open_time.value for c in rows], dtype="int64")
        index = pd.DatetimeIndex(open_ns.view("datetime64[ns]"), name="open_time").tz_localize(
            "UTC"
        )
        return pd.DataFrame(values, index=index, columns=list(FRAME_COLUMNS))
