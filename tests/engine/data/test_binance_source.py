"""python-binance itself against the fake Binance server on loopback: paging, faults, resume."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine.data import (
    DataError,
    RetryPolicy,
    SourceError,
    UnknownSymbolError,
    fetch_klines,
    make_client,
    read_candles,
    stored_candle_range,
    validate_candles,
)
from tests.engine.data.conftest import HOUR_MS, SleepRecorder, snapshot
from tests.fakes.binance_server import FakeBinanceServer, banned, rate_limited
from tests.fakes.http_fake import html_error, slow

KLINES = "/api/v3/klines"


def page_requests(server: FakeBinanceServer) -> list[dict[str, str]]:
    """klines requests for pages (python-binance also asks limit=1 for the first candle ever)."""
    return [r.query for r in server.klines_requests() if r.query.get("limit") != "1"]


def test_fetch_pages_over_the_whole_history_and_stores_only_closed_candles(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy
) -> None:
    since = pd.Timestamp(binance.now_ms - 3500 * HOUR_MS, unit="ms", tz="UTC")
    result = fetch_klines(
        data_dir, "BTCUSDT", "1h", since=since, api_url=binance.url, retry=fast_retry
    )
    assert result.candles_stored == 3500
    pages = page_requests(binance)
    assert len(pages) >= 4  # 3500 candles at 1000 a page
    assert all(int(p["limit"]) <= 1000 for p in pages)
    frame = read_candles(data_dir, "BTCUSDT", "1h").frame
    assert validate_candles(frame, "1h").ok
    # The fake serves the candle opened at "now" unfinished; it must not be stored.
    assert frame.index[-1] == pd.Timestamp(binance.now_ms - HOUR_MS, unit="ms", tz="UTC")
    assert (frame["close_time"] < pd.Timestamp(binance.now_ms, unit="ms", tz="UTC")).all()


def test_the_limit_trap_is_real_and_refused(binance: FakeBinanceServer, data_dir: Path) -> None:
    client = make_client(binance.url)
    start = binance.now_ms - 3000 * HOUR_MS
    # python-binance with limit above the page size silently returns one page.
    rows = client.get_historical_klines("BTCUSDT", "1h", start_str=start, limit=1500)
    assert len(rows) == 1000
    with pytest.raises(ValueError, match=r"page_size 1500 is outside 1\.\.1000"):
        fetch_klines(data_dir, "BTCUSDT", "1h", since="2024-01-01", client=client, page_size=1500)


def test_rate_limit_429_waits_for_retry_after_then_succeeds(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy, sleeps: SleepRecorder
) -> None:
    binance.inject(rate_limited(retry_after=7, path=KLINES))
    result = fetch_klines(
        data_dir, "BTCUSDT", "1h", since="2024-04-29", api_url=binance.url, retry=fast_retry
    )
    assert sleeps.waits == [7.0]
    assert result.candles_stored == 48


def test_418_ban_longer_than_the_bound_fails_at_once_with_a_clear_error(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy, sleeps: SleepRecorder
) -> None:
    binance.inject(banned(retry_after=3600, path=KLINES))
    with pytest.raises(SourceError, match=r"HTTP 418 .*wait 3600 s, more than the 30 s allowed"):
        fetch_klines(
            data_dir, "BTCUSDT", "1h", since="2024-04-29", api_url=binance.url, retry=fast_retry
        )
    assert sleeps.waits == []
    assert snapshot(data_dir) == {}


def test_html_error_page_is_retried_with_backoff(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy, sleeps: SleepRecorder
) -> None:
    binance.inject(html_error(502, path=KLINES, times=2))
    result = fetch_klines(
        data_dir, "BTCUSDT", "1h", since="2024-04-30", api_url=binance.url, retry=fast_retry
    )
    assert result.candles_stored == 24
    assert sleeps.waits == [0.5, 1.0]  # exponential backoff


def test_html_error_page_that_persists_gives_up_after_bounded_attempts(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy, sleeps: SleepRecorder
) -> None:
    binance.inject(html_error(502, path=KLINES, times=None))
    with pytest.raises(SourceError, match=r"failed after 3 attempts: HTTP 502.*Bad Gateway"):
        fetch_klines(
            data_dir, "BTCUSDT", "1h", since="2024-04-30", api_url=binance.url, retry=fast_retry
        )
    assert len(sleeps.waits) == 2
    assert snapshot(data_dir) == {}


def test_html_page_with_status_200_is_not_taken_for_data(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy
) -> None:
    binance.inject(html_error(200, path=KLINES, times=None))
    with pytest.raises(SourceError, match="answer is not JSON"):
        fetch_klines(
            data_dir, "BTCUSDT", "1h", since="2024-04-30", api_url=binance.url, retry=fast_retry
        )


def test_timeout_is_retried_then_reported(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy
) -> None:
    client = make_client(binance.url, timeout=0.2)
    binance.inject(slow(1.0, path=KLINES, times=1))
    result = fetch_klines(
        data_dir, "BTCUSDT", "1h", since="2024-04-30", client=client, retry=fast_retry
    )
    assert result.candles_stored == 24

    binance.inject(slow(1.0, path=KLINES, times=None))
    binance.now_ms += 5 * HOUR_MS
    with pytest.raises(SourceError, match="failed after 3 attempts: timed out"):
        fetch_klines(data_dir, "BTCUSDT", "1h", client=client, retry=fast_retry)


def test_unknown_symbol_is_a_clear_error_and_stores_nothing(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy
) -> None:
    with pytest.raises(
        UnknownSymbolError,
        match=r"Binance does not know the symbol 'NOPEUSDT' \(code -1121: Invalid symbol.\)",
    ):
        fetch_klines(
            data_dir, "NOPEUSDT", "1h", since="2024-04-01", api_url=binance.url, retry=fast_retry
        )
    assert snapshot(data_dir) == {}


def test_high_used_weight_slows_down(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy, sleeps: SleepRecorder
) -> None:
    binance.used_weight = 5900
    fetch_klines(
        data_dir, "BTCUSDT", "1h", since="2024-04-30", api_url=binance.url, retry=fast_retry
    )
    assert sleeps.waits
    assert all(0 < wait <= 30.0 for wait in sleeps.waits)


def test_interrupted_fetch_leaves_a_valid_store_and_the_next_fetch_resumes(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy
) -> None:
    since = pd.Timestamp(binance.now_ms - 3500 * HOUR_MS, unit="ms", tz="UTC")
    # The connection breaks for good after the first window (its klines requests go through).
    binance.inject(html_error(502, path=KLINES, skip=4, times=None))
    with pytest.raises(SourceError):
        fetch_klines(data_dir, "BTCUSDT", "1h", since=since, api_url=binance.url, retry=fast_retry)
    partial = read_candles(data_dir, "BTCUSDT", "1h").frame
    assert 0 < len(partial) < 3500
    assert validate_candles(partial, "1h").ok
    assert partial.index[0] == since

    binance.clear_faults()
    binance.requests.clear()
    result = fetch_klines(data_dir, "BTCUSDT", "1h", api_url=binance.url, retry=fast_retry)
    first_page = page_requests(binance)[0]
    resume_at = partial.index[-1] + pd.Timedelta(hours=1)
    assert int(first_page["startTime"]) == resume_at.value // 1_000_000
    assert result.candles_stored == 3500 - len(partial)
    complete = read_candles(data_dir, "BTCUSDT", "1h").frame
    assert len(complete) == 3500
    assert validate_candles(complete, "1h").ok


def test_incremental_fetch_asks_only_for_new_candles(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy
) -> None:
    fetch_klines(
        data_dir, "BTCUSDT", "1h", since="2024-04-25", api_url=binance.url, retry=fast_retry
    )
    before = read_candles(data_dir, "BTCUSDT", "1h")
    again = fetch_klines(data_dir, "BTCUSDT", "1h", api_url=binance.url, retry=fast_retry)
    assert again.candles_stored == 0
    assert read_candles(data_dir, "BTCUSDT", "1h").content_hash == before.content_hash

    binance.now_ms += 5 * HOUR_MS
    later = fetch_klines(data_dir, "BTCUSDT", "1h", api_url=binance.url, retry=fast_retry)
    assert later.candles_stored == 5
    assert stored_candle_range(data_dir, "BTCUSDT", "1h")[1] == pd.Timestamp(
        binance.now_ms - HOUR_MS, unit="ms", tz="UTC"
    )


def test_a_gap_on_the_exchange_is_reported_not_hidden(
    binance: FakeBinanceServer, data_dir: Path, fast_retry: RetryPolicy
) -> None:
    missing = binance.now_ms - 10 * HOUR_MS
    binance.market.symbols["BTCUSDT"].missing_open_times.add(missing)
    result = fetch_klines(
        data_dir, "BTCUSDT", "1h", since="2024-04-30", api_url=binance.url, retry=fast_retry
    )
    assert result.to_dict()["gaps"] == 1
    frame = read_candles(data_dir, "BTCUSDT", "1h").frame
    assert validate_candles(frame, "1h").issues["gaps"].first == [
        pd.Timestamp(missing, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    ]


def test_a_first_fetch_needs_a_start(binance: FakeBinanceServer, data_dir: Path) -> None:
    with pytest.raises(DataError, match="no BTCUSDT 1h candles are stored yet: give a start"):
        fetch_klines(data_dir, "BTCUSDT", "1h", api_url=binance.url)


def test_base_url_comes_from_the_environment(
    binance: FakeBinanceServer,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    fast_retry: RetryPolicy,
) -> None:
    monkeypatch.setenv("TRADEBOT_BINANCE_API_URL", binance.url)
    result = fetch_klines(data_dir, "BTCUSDT", "1h", since="2024-04-30", retry=fast_retry)
    assert result.candles_stored == 24
    assert binance.url + "/api" == make_client().API_URL
    assert make_client("http://127.0.0.1:1/api").API_URL == "http://127.0.0.1:1/api"


def test_exchange_info_lists_the_symbol_filters(binance: FakeBinanceServer) -> None:
    info = make_client(binance.url).get_symbol_info("BTCUSDT")
    filters = {f["filterType"] for f in info["filters"]}
    assert {"PRICE_FILTER", "LOT_SIZE", "MIN_NOTIONAL", "NOTIONAL"} <= filters
    assert make_client(binance.url).ping() == {}
