"""The candle and sentiment frame layouts (docs/interfaces.md) and their content hash."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

INDEX_NAME = "open_time"
PRICE_COLUMNS = ("open", "high", "low", "close")
CORE_COLUMNS = (*PRICE_COLUMNS, "volume")
# Kline fields beyond OHLCV, present only where the source has them.
EXTRA_COLUMNS = ("close_time", "quote_volume", "trades", "taker_buy_base", "taker_buy_quote")
CANDLE_COLUMNS = CORE_COLUMNS + EXTRA_COLUMNS

SENTIMENT_NAME = "fear_greed"
SENTIMENT_INDEX_NAME = "date"

_HASH_VERSION = b"tradebot-frame-hash-v1\n"


def empty_candles() -> pd.DataFrame:
    index = pd.DatetimeIndex([], tz="UTC", name=INDEX_NAME)
    return pd.DataFrame(
        {name: pd.Series([], dtype="float64") for name in CORE_COLUMNS}, index=index
    )


def normalize_candles(frame: pd.DataFrame) -> pd.DataFrame:
    """Put columns in the contract's order and dtypes: float64, close_time as UTC datetime."""
    columns = [name for name in CANDLE_COLUMNS if name in frame.columns]
    out = frame.loc[:, columns].copy()
    for name in columns:
        if name == "close_time":
            out[name] = pd.to_datetime(out[name], utc=True)
        else:
            out[name] = out[name].astype("float64")
    out.index = pd.DatetimeIndex(out.index).tz_convert("UTC") if len(out.index) else out.index
    out.index.name = INDEX_NAME
    return out


def empty_sentiment() -> pd.Series:
    index = pd.DatetimeIndex([], tz="UTC", name=SENTIMENT_INDEX_NAME)
    return pd.Series([], index=index, dtype="float64", name=SENTIMENT_NAME)


def content_hash(data: pd.DataFrame | pd.Series) -> str:
    """sha256 of exactly these rows: index, column names, dtypes and values.

    Defined on the raw numbers (nanosecond timestamps, float64 bits) rather than
    on pickles or CSV text, so it is stable across pandas versions and any
    process that reads the same rows gets the same hash.
    """
    frame = data.to_frame() if isinstance(data, pd.Series) else data
    digest = hashlib.sha256(_HASH_VERSION)
    digest.update(f"rows={len(frame)}\n".encode())
    digest.update(f"index={frame.index.name}:{frame.index.dtype}\n".encode())
    digest.update(_column_bytes(frame.index))
    for name in frame.columns:
        column = frame[name]
        digest.update(f"column={name}:{column.dtype}\n".encode())
        digest.update(_column_bytes(column))
    return digest.hexdigest()


def _column_bytes(values: pd.Index | pd.Series) -> bytes:
    if isinstance(values.dtype, pd.DatetimeTZDtype) or np.issubdtype(values.dtype, np.datetime64):
        as_ns = pd.DatetimeIndex(values).as_unit("ns").asi8
        return np.ascontiguousarray(as_ns, dtype="<i8").tobytes()
    array = np.asarray(values, dtype="float64")
    # Every NaN hashes alike, whatever its payload bits.
    array = np.where(np.isnan(array), np.nan, array)
    return np.ascontiguousarray(array, dtype="<f8").tobytes()
