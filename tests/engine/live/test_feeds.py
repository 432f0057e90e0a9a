"""The live klines feed against the fake Binance server: closed bars only, none twice, none lost."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator

import pandas as pd
import pytest

from engine.live.candles import epoch_ns
from engine.live.feeds import BinanceKlineFeed, FeedItem, make_binance_client
from tests.fakes.binance_server import DEFAULT_NOW_MS, FakeBinanceServer
from tests.fakes.http_fake import FakeResponse, Fault, html_error
from tests.support.budgets import budget

HOUR_MS = 3_600_000


@pytest.fixture
def server() -> Iterator[FakeBinanceServer]:
    fake = FakeBinanceServer(now_ms=DEFAULT_NOW_MS + 30 * 60_000)  # half-way through a bar
    fake.market.add_symbol("BTCUSDT", listed_at_ms=DEFAULT_NOW_MS - 400 * HOUR_MS)
    with fake:
        yield fake


def _feed(server: FakeBinanceServer, last: pd.Timestamp | None = None) -> BinanceKlineFeed:
    return BinanceKlineFeed(
        make_binance_client(base_url=server.url),
        symbol="BTCUSDT",
        interval="1h",
        interval_delta=pd.Timedelta(hours=1),
        last_processed=last,
        history=10,
        stop_event=threading.Event(),
        poll_seconds=0.0,
        backoff_initial=0.01,
        backoff_max=0.05,
        clock=lambda: server.now_ms / 1000,
    )


def _opens(items: list[FeedItem]) -> list[int]:
    # Live candles carry a datetime, not a pandas Timestamp (the live path has no pandas).
    return [epoch_ns(i.candle.open_time) // 10**6 for i in items if i.candle is not None]


def test_first_fetch_warms_up_and_only_the_newest_closed_bar_is_tradable(server) -> None:
    items = _feed(server).fetch_closed()
    opens = _opens(items)
    newest_closed = DEFAULT_NOW_MS - HOUR_MS
    assert opens[-1] == newest_closed, "the forming bar must not be delivered"
    assert all(b - a == HOUR_MS for a, b in itertools.pairwise(opens))
    assert len(opens) >= 10
    assert [i.tradable for i in items] == [False] * (len(items) - 1) + [True]


def test_reconnect_after_error_pages_backfills_without_repeats(server, caplog) -> None:
    feed = _feed(server, last=pd.Timestamp(DEFAULT_NOW_MS - HOUR_MS, unit="ms", tz="UTC"))
    server.inject(html_error(502, path="/api/v3/klines", times=2))
    server.now_ms += 3 * HOUR_MS  # three bars close while the exchange misbehaves
    delivered: list[FeedItem] = []
    with caplog.at_level(logging.WARNING, logger="engine.live.feed"):
        for item in feed:
            delivered.append(item)
            if len(_opens(delivered)) == 3:
                break
    assert sum(1 for i in delivered if i.candle is None) >= 2, "heartbeats while failing"
    assert "klines feed error (attempt 2)" in caplog.text
    assert _opens(delivered) == [DEFAULT_NOW_MS + k * HOUR_MS for k in range(3)]
    assert feed.failures == 0, "the failure count resets once the feed answers again"


def test_repeated_candles_are_dropped(server, caplog) -> None:
    last = DEFAULT_NOW_MS - 2 * HOUR_MS
    feed = _feed(server, last=pd.Timestamp(last, unit="ms", tz="UTC"))
    row = server.market._row(server.market.symbols["BTCUSDT"], last, HOUR_MS)
    newer = server.market._row(server.market.symbols["BTCUSDT"], last + HOUR_MS, HOUR_MS)
    server.inject(Fault(FakeResponse.json([row, newer, newer]), path="/api/v3/klines"))
    with caplog.at_level(logging.WARNING, logger="engine.live.feed"):
        items = feed.fetch_closed()
    assert _opens(items) == [last + HOUR_MS]
    assert caplog.text.count("feed repeated candle") == 2


def test_a_gap_on_the_exchange_is_logged_loudly(server, caplog) -> None:
    missing = DEFAULT_NOW_MS - 3 * HOUR_MS
    server.market.symbols["BTCUSDT"].missing_open_times.add(missing)
    feed = _feed(server, last=pd.Timestamp(missing - HOUR_MS, unit="ms", tz="UTC"))
    with caplog.at_level(logging.ERROR, logger="engine.live.feed"):
        items = feed.fetch_closed()
    assert _opens(items) == [missing + HOUR_MS, missing + 2 * HOUR_MS]
    assert "exchange has no BTCUSDT candles" in caplog.text and "(1 missing)" in caplog.text


def test_replay_speed_paces_bars_with_heartbeats_and_stops_at_once(monkeypatch) -> None:
    import time

    from engine.live import feeds
    from engine.live.candles import candles_from_frame
    from engine.live.feeds import ReplayFeed
    from tests.engine.live.helpers import minute_candles

    monkeypatch.setattr(feeds, "HEARTBEAT_SECONDS", 0.02)
    bars = candles_from_frame(minute_candles(3))
    stop = threading.Event()
    feed = ReplayFeed(bars, interval=pd.Timedelta(minutes=1), speed=60 / 0.1, stop_event=stop)
    started = time.monotonic()
    items = list(feed)
    elapsed = time.monotonic() - started
    assert [i.candle for i in items if i.candle is not None] == bars
    assert sum(1 for i in items if i.candle is None) >= 6, "heartbeats while waiting"
    assert 0.25 <= elapsed < budget(2.0), "three bars at 0.1 s each"
    stop.set()
    assert [i.candle for i in ReplayFeed(bars, interval=pd.Timedelta(minutes=1), speed=1.0,
                                         stop_event=stop)] == []  # fmt: skip
