"""Frames in the docs/interfaces.md layout read straight from the shared CSV files.

Used until engine.data's CSV import can be relied on; test-only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def load_candles(data_dir: Path, symbol: str = "BTCUSDT", interval: str = "1h") -> pd.DataFrame:
    raw = pd.read_csv(data_dir / f"{symbol}-{interval}.csv")
    index = pd.DatetimeIndex(pd.to_datetime(raw["date"], utc=True), name="open_time")
    columns = ["open", "high", "low", "close", "volume"]
    return pd.DataFrame(raw[columns].to_numpy(dtype="float64"), index=index, columns=columns)


def load_sentiment(data_dir: Path) -> pd.Series:
    raw = pd.read_csv(data_dir / "fear_greed_index.csv")
    index = pd.DatetimeIndex(pd.to_datetime(raw["date"], format="%d/%m/%Y", utc=True), name="date")
    return pd.Series(raw["value"].to_numpy(dtype="float64"), index=index, name="fear_greed")


def contiguous_slice(candles: pd.DataFrame, rows: int, start: str) -> pd.DataFrame:
    """`rows` candles from `start` on; fails loudly if the slice has a gap."""
    part = candles.loc[pd.Timestamp(start, tz="UTC") :].iloc[:rows]
    steps = part.index.to_series().diff().dropna().unique()
    assert len(part) == rows and len(steps) == 1, f"slice from {start} is not contiguous"
    return part
