"""The local Parquet store: one file per symbol and interval, one for the sentiment series.

Layout under the store folder::

    candles/<SYMBOL>/<interval>.parquet    e.g. candles/BTCUSDT/1h.parquet
    sentiment/fear_greed.parquet

Every write merges with what is stored (deduplicated by time, newest source
wins, sorted) and replaces the file atomically: the new content goes to a
temporary file in the same folder, is flushed to disk, then ``os.replace``
swaps it in. A crash or a failed import therefore leaves the previous file
intact, and a reader never sees a half-written file. A per-file lock
serialises concurrent writers (two refresh tasks at once) so neither loses
the other's rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engine.data.errors import StoreEmptyError
from engine.data.frames import (
    INDEX_NAME,
    SENTIMENT_INDEX_NAME,
    SENTIMENT_NAME,
    content_hash,
    normalize_candles,
)
from engine.data.intervals import interval_timedelta

_SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")


@dataclass(frozen=True)
class ReadResult:
    """Rows read from the store and the content hash of exactly those rows."""

    frame: pd.DataFrame | pd.Series
    content_hash: str


@dataclass(frozen=True)
class MergeResult:
    rows_before: int
    rows_after: int
    rows_added: int
    rows_replaced: int
    path: Path


def candles_path(data_dir: Path | str, symbol: str, interval: str) -> Path:
    interval_timedelta(interval)  # rejects an unknown interval before it becomes a file name
    return Path(data_dir) / "candles" / checked_symbol(symbol) / f"{interval}.parquet"


def sentiment_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / "sentiment" / f"{SENTIMENT_NAME}.parquet"


def checked_symbol(symbol: str) -> str:
    """Symbols become folder names: allow only Binance's upper-case letters and digits."""
    if not _SYMBOL_PATTERN.match(symbol):
        raise ValueError(f"invalid symbol {symbol!r}: expected upper-case letters and digits")
    return symbol


def read_candles(
    data_dir: Path | str,
    symbol: str,
    interval: str,
    *,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> ReadResult:
    """Candles with ``start <= open_time < end`` (both optional, UTC) and their content hash."""
    path = candles_path(data_dir, symbol, interval)
    if not path.exists():
        raise StoreEmptyError(
            f"no {symbol} {interval} candles stored in {data_dir}: import or fetch them first"
        )
    filters = _range_filters(INDEX_NAME, start, end)
    frame = pq.read_table(path, filters=filters or None).to_pandas()
    frame = normalize_candles(frame)
    return ReadResult(frame=frame, content_hash=content_hash(frame))


def stored_candle_range(
    data_dir: Path | str, symbol: str, interval: str
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """First and last stored open time, or None when nothing is stored."""
    path = candles_path(data_dir, symbol, interval)
    if not path.exists():
        return None
    times = pq.read_table(path, columns=[INDEX_NAME]).column(INDEX_NAME).to_pandas()
    if times.empty:
        return None
    return _utc(times.iloc[0]), _utc(times.iloc[-1])


def merge_candles(
    data_dir: Path | str, symbol: str, interval: str, candles: pd.DataFrame
) -> MergeResult:
    """Add candles to the store; rows at an already stored open time replace the stored ones."""
    path = candles_path(data_dir, symbol, interval)
    with _locked(path):
        existing = normalize_candles(pq.read_table(path).to_pandas()) if path.exists() else None
        merged, added, replaced = _merge_frames(existing, normalize_candles(candles))
        _write_parquet_atomically(merged, path)
    before = 0 if existing is None else len(existing)
    return MergeResult(before, len(merged), added, replaced, path)


def read_sentiment(
    data_dir: Path | str,
    *,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> ReadResult:
    """The Fear & Greed series (``start <= date < end``) and its content hash."""
    path = sentiment_path(data_dir)
    if not path.exists():
        raise StoreEmptyError(f"no sentiment stored in {data_dir}: import or fetch it first")
    filters = _range_filters(SENTIMENT_INDEX_NAME, start, end)
    series = _sentiment_series(pq.read_table(path, filters=filters or None).to_pandas())
    return ReadResult(frame=series, content_hash=content_hash(series))


def merge_sentiment(data_dir: Path | str, sentiment: pd.Series) -> MergeResult:
    path = sentiment_path(data_dir)
    with _locked(path):
        existing = _sentiment_series(pq.read_table(path).to_pandas()) if path.exists() else None
        new = _sentiment_series(sentiment.to_frame())
        merged, added, replaced = _merge_frames(
            None if existing is None else existing.to_frame(), new.to_frame()
        )
        _write_parquet_atomically(merged, path)
    before = 0 if existing is None else len(existing)
    return MergeResult(before, len(merged), added, replaced, path)


def _sentiment_series(frame: pd.DataFrame) -> pd.Series:
    series = frame[SENTIMENT_NAME].astype("float64")
    series.index = pd.DatetimeIndex(series.index).tz_convert("UTC")
    series.index.name = SENTIMENT_INDEX_NAME
    series.name = SENTIMENT_NAME
    return series


def _merge_frames(
    existing: pd.DataFrame | None, new: pd.DataFrame
) -> tuple[pd.DataFrame, int, int]:
    new = new[~new.index.duplicated(keep="last")]
    if existing is None or existing.empty:
        return new.sort_index(), len(new), 0
    replaced = int(new.index.isin(existing.index).sum())
    kept = existing[~existing.index.isin(new.index)]
    merged = pd.concat([kept, new]).sort_index()
    return merged, len(new) - replaced, replaced


def _write_parquet_atomically(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp_name).replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable; without it a power cut could bring back the old file.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock beside the file, held for a read-merge-write cycle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+b") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _range_filters(
    column: str, start: pd.Timestamp | str | None, end: pd.Timestamp | str | None
) -> list[tuple[str, str, pd.Timestamp]]:
    filters = []
    if start is not None:
        filters.append((column, ">=", _utc(start)))
    if end is not None:
        filters.append((column, "<", _utc(end)))
    return filters


def _utc(value: pd.Timestamp | str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
