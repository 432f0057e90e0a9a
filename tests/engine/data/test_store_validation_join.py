"""The store (ranges, hashes, atomic and concurrent writes), validation, the join's lag."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.data import (
    StoreEmptyError,
    ValidationFailed,
    ValidationPolicy,
    apply_candle_policy,
    content_hash,
    join_sentiment,
    read_candles,
    validate_candles,
)
from engine.data import store as store_module
from engine.data.store import merge_candles
from tests.engine.data.conftest import snapshot


def candles(start: str, count: int, freq: str = "1h") -> pd.DataFrame:
    index = pd.date_range(start, periods=count, freq=freq, tz="UTC", name="open_time")
    close = 100.0 + np.arange(count, dtype="float64")
    return pd.DataFrame(
        {"open": close - 0.5, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0},
        index=index,
    )


def test_range_read_returns_exactly_the_rows_and_their_hash(filled_store: Path) -> None:
    day = read_candles(filled_store, "BTCUSDT", "1h", start="2024-01-01", end="2024-01-02")
    assert len(day.frame) == 24
    assert day.frame.index.tz is not None and str(day.frame.index.tz) == "UTC"
    assert day.frame.index.name == "open_time"
    assert list(day.frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(day.frame.dtypes == "float64")
    assert day.content_hash == content_hash(day.frame)
    next_day = read_candles(filled_store, "BTCUSDT", "1h", start="2024-01-02", end="2024-01-03")
    assert next_day.content_hash != day.content_hash
    changed = day.frame.copy()
    changed.iloc[5, 3] += 0.01
    assert content_hash(changed) != day.content_hash


def test_merge_deduplicates_sorts_and_lets_the_newer_source_win(data_dir: Path) -> None:
    merge_candles(data_dir, "BTCUSDT", "1h", candles("2024-01-01 05:00", 5))
    newer = candles("2024-01-01 00:00", 7)
    newer["close"] = newer["close"] + 0.25
    result = merge_candles(data_dir, "BTCUSDT", "1h", newer)
    assert (result.rows_added, result.rows_replaced, result.rows_after) == (5, 2, 10)
    frame = read_candles(data_dir, "BTCUSDT", "1h").frame
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert (
        frame.loc[pd.Timestamp("2024-01-01 05:00", tz="UTC"), "close"] == 105.25
    )  # was 100.0 from the first write


def test_a_write_that_fails_midway_leaves_the_previous_file(
    filled_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(filled_store)

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store_module.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        merge_candles(filled_store, "BTCUSDT", "1h", candles("2026-01-01", 3))
    assert snapshot(filled_store) == before  # no temp file left either


def test_concurrent_writers_lose_no_rows(data_dir: Path) -> None:
    parts = [candles("2024-01-01", 500).iloc[i::4] for i in range(4)]
    threads = [
        threading.Thread(target=merge_candles, args=(data_dir, "BTCUSDT", "1h", part))
        for part in parts
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_candles(data_dir, "BTCUSDT", "1h").frame) == 500


def test_reading_an_empty_store_says_what_to_do(data_dir: Path) -> None:
    with pytest.raises(StoreEmptyError, match=r"no BTCUSDT 1h candles stored .*import or fetch"):
        read_candles(data_dir, "BTCUSDT", "1h")
    with pytest.raises(ValueError, match=r"invalid symbol '\.\./etc'"):
        read_candles(data_dir, "../etc", "1h")


@pytest.mark.parametrize(
    ("check", "mutate"),
    [
        ("nan", lambda f: f.iloc.__setitem__((3, 3), np.nan)),
        ("non_positive_price", lambda f: f.iloc.__setitem__((3, 2), 0.0)),
        ("negative_volume", lambda f: f.iloc.__setitem__((3, 4), -1.0)),
        ("ohlc_inconsistent", lambda f: f.iloc.__setitem__((3, 1), 50.0)),
    ],
)
def test_each_row_check_finds_its_problem_at_its_time(
    check: str, mutate: Callable[[pd.DataFrame], None]
) -> None:
    frame = candles("2024-01-01", 10)
    mutate(frame)
    report = validate_candles(frame, "1h")
    assert report.issues[check].count == 1
    assert report.issues[check].first == ["2024-01-01T03:00:00Z"]
    assert not report.ok


def test_duplicates_order_and_gaps_are_reported() -> None:
    frame = candles("2024-01-01", 10)
    frame = pd.concat([frame.iloc[:5], frame.iloc[[2]], frame.iloc[8:], frame.iloc[[6]]])
    report = validate_candles(frame, "1h")
    assert report.issues["duplicates"].first == ["2024-01-01T02:00:00Z"]
    assert report.issues["non_monotonic"].count == 2  # the repeated 02:00 and the late 06:00
    assert report.issues["gaps"].first == ["2024-01-01T05:00:00Z", "2024-01-01T07:00:00Z"]
    assert report.issues["gaps"].missing_rows == 2


def test_policies_refuse_drop_and_fill_are_explicit() -> None:
    frame = candles("2024-01-01", 10).drop(pd.Timestamp("2024-01-01 04:00", tz="UTC"))
    frame.iloc[7, 4] = -1.0
    with pytest.raises(ValidationFailed, match="negative_volume=1"):
        apply_candle_policy(frame, "1h", ValidationPolicy(), source="test")
    clean, report = apply_candle_policy(
        frame, "1h", ValidationPolicy(bad_rows="drop", gaps="fill", max_fill=1), source="test"
    )
    assert report.dropped_rows == 1
    assert report.filled_rows == 2  # the 04:00 hole and the hole left by the dropped row
    assert len(clean) == 10
    assert validate_candles(clean, "1h").ok
    _, short_fill = apply_candle_policy(
        frame.drop(pd.Timestamp("2024-01-01 05:00", tz="UTC")),
        "1h",
        ValidationPolicy(bad_rows="drop", gaps="fill", max_fill=1),
        source="test",
    )
    assert short_fill.filled_rows == 1  # a two-row gap exceeds max_fill and stays


def test_sentiment_is_seen_only_after_the_day_ends() -> None:
    hourly = candles("2024-01-01 20:00", 8)  # 20:00 Jan 1 .. 03:00 Jan 2
    sentiment = pd.Series(
        [10.0, 20.0, 30.0],
        index=pd.DatetimeIndex(["2023-12-31", "2024-01-01", "2024-01-02"], tz="UTC", name="date"),
        name="fear_greed",
    )
    joined = join_sentiment(hourly, sentiment, interval="1h")
    seen = dict(zip(joined.index.strftime("%d %H:%M"), joined["fear_greed"], strict=True))
    # The 23:00 candle closes at midnight, when Jan 1's value is published.
    assert seen["01 22:00"] == 10.0
    assert seen["01 23:00"] == 20.0
    assert seen["02 03:00"] == 20.0  # Jan 2's value is not known before Jan 3


def test_daily_candles_see_the_previous_day_and_stale_values_expire() -> None:
    daily = candles("2024-01-01", 12, freq="1D")
    sentiment = pd.Series(
        [50.0, 60.0],
        index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="UTC", name="date"),
        name="fear_greed",
    )
    joined = join_sentiment(daily, sentiment, max_age=pd.Timedelta(days=3))
    assert joined["fear_greed"].iloc[0] == 50.0  # the Jan 1 candle closes at the end of Jan 1
    assert joined["fear_greed"].iloc[1] == 60.0
    assert joined["fear_greed"].iloc[4] == 60.0
    assert np.isnan(joined["fear_greed"].iloc[5])  # more than three days old
