"""Candle feeds: replayed history (paper runs, tests) and live closed klines from Binance.

A feed yields FeedItem objects: a closed candle, or (candle None) a heartbeat while
waiting so the status file stays fresh between candles.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.live.candles import Candle, epoch_ns, utc_from_ms

log = logging.getLogger("engine.live.feed")

BINANCE_URL_ENV = "TRADEBOT_BINANCE_API_URL"
KLINES_PER_REQUEST = 1000
HEARTBEAT_SECONDS = 5.0


@dataclass(frozen=True)
class FeedItem:
    candle: Candle | None
    # False for bars older than the current one (catch-up after downtime): they rebuild
    # history but are never traded on, since their "next open" is already in the past.
    tradable: bool = True
    # On a heartbeat: why the last poll round failed (None when it succeeded). The engine
    # puts it in its status, so an exchange it cannot reach is visible, not a silent wait.
    error: str | None = None


class ReplayFeed:
    """Replays candles; `speed` multiplies time (3600: an hour bar per second; 0: flat out)."""

    def __init__(
        self,
        candles: Sequence[Candle],
        *,
        interval: timedelta,
        speed: float = 0.0,
        stop_event: threading.Event | None = None,
        trade_from: datetime | None = None,
    ) -> None:
        if speed < 0:
            raise ValueError(f"replay speed must be >= 0, got {speed}")
        self.candles = candles
        self.delay = 0.0 if speed == 0 else interval.total_seconds() / speed
        self.stop_event = stop_event or threading.Event()
        # Bars before trade_from only warm the model up.
        self.trade_from = trade_from

    def __iter__(self) -> Iterator[FeedItem]:
        for candle in self.candles:
            if self.stop_event.is_set():
                return
            tradable = self.trade_from is None or candle.open_time >= self.trade_from
            yield FeedItem(candle, tradable=tradable)
            if self.delay:
                yield from self._wait(self.delay)

    def _wait(self, seconds: float) -> Iterator[FeedItem]:
        """Sleep between bars, with a heartbeat at least every HEARTBEAT_SECONDS."""
        deadline = time.monotonic() + seconds
        while not self.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.stop_event.wait(min(left, HEARTBEAT_SECONDS)):
                return
            if deadline - time.monotonic() > 0:
                yield FeedItem(None)


class FeedError(RuntimeError):
    """The exchange's answer is not a usable list of klines (error page, bad row)."""


def parse_kline(row: Any) -> tuple[Candle, int]:
    """A Binance kline row -> (candle, close time in ms); FeedError names the bad field."""
    if not isinstance(row, list | tuple) or len(row) < 7:
        raise FeedError(f"kline row is not a list of >= 7 fields: {str(row)[:120]!r}")
    try:
        candle = Candle(
            open_time=utc_from_ms(int(row[0])),
            open=float(row[1]),
            high=float(row[2]),
            low=float(row[3]),
            close=float(row[4]),
            volume=float(row[5]),
        )
        close_ms = int(row[6])
    except (TypeError, ValueError) as exc:
        raise FeedError(f"kline row has a non-numeric field ({exc}): {str(row)[:120]!r}") from exc
    return candle, close_ms


def make_binance_client(
    *,
    api_key: str | None = None,
    api_secret: str | None = None,
    base_url: str | None = None,
    testnet: bool = False,
    timeout: float = 10.0,
) -> Any:
    """A python-binance Client; `base_url` (or TRADEBOT_BINANCE_API_URL) replaces the host."""
    from binance.client import Client

    client = Client(api_key, api_secret, testnet=testnet, ping=False)
    client.REQUEST_TIMEOUT = timeout
    base_url = base_url or os.environ.get(BINANCE_URL_ENV)
    if base_url:
        base_url = base_url.rstrip("/")
        client.API_URL = f"{base_url}/api"
        client.API_TESTNET_URL = f"{base_url}/api"
        client.MARGIN_API_URL = f"{base_url}/sapi"
    return client


CLOCK_CHOICES = ("system", "exchange")


class ExchangeClock:
    """The exchange's server time (``GET /api/v3/time``), read once per poll round.

    With it the engine lives on whatever clock the exchange has: the real one in
    production (where the system clock agrees with it anyway), an accelerated one against
    the test and demo fake. Between two reads it stands still, so every decision of one
    round sees the same "now". Calling it before the first read reads it.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._now: float | None = None

    def refresh(self) -> float:
        """Ask the exchange for its time; FeedError (or the client's own errors) if it cannot."""
        answer = self.client.get_server_time()
        server_ms = answer.get("serverTime") if isinstance(answer, dict) else None
        if isinstance(server_ms, bool) or not isinstance(server_ms, int | float):
            raise FeedError(f"server time answer has no numeric serverTime: {str(answer)[:120]!r}")
        if server_ms <= 0 or server_ms != server_ms:  # NaN != NaN
            raise FeedError(f"server time answer is not a positive time: {server_ms!r}")
        self._now = float(server_ms) / 1000.0
        return self._now

    def __call__(self) -> float:
        return self.refresh() if self._now is None else self._now


def refresh_clock(clock: Callable[[], float]) -> None:
    """Start a poll round: a clock that reads a remote time (ExchangeClock) reads it now."""
    refresh = getattr(clock, "refresh", None)
    if refresh is not None:
        refresh()


# A Retry-After longer than this is not believed (a broken header must not park the engine).
RETRY_AFTER_MAX = 900.0


def retry_after_seconds(exc: BaseException) -> float | None:
    """The Retry-After (seconds) of the HTTP answer behind a feed error, if it had one."""
    for error in (exc, exc.__cause__):
        response = getattr(error, "response", None)
        headers = getattr(response, "headers", None)
        if headers is None:
            continue
        try:
            seconds = float(headers.get("Retry-After", ""))
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


class BinanceKlineFeed:
    """Polls the klines endpoint for closed candles, resuming after the last one processed.

    Each request asks for bars from (last processed + 1 interval), so a reconnect after
    errors backfills what was missed instead of skipping it, and rows at or before the
    last processed bar are dropped, so nothing is processed twice. A gap the exchange
    itself has (no rows at all) is logged as an error.

    After a restart (`last_processed` given, and `rewarm`), the first round also re-reads
    the `history` bars up to the last processed one, as history only: the engine primes
    its buffer with them (it knows them as processed), so the first new bar is decided on
    the same history as in an uninterrupted run, not skipped for want of it.
    """

    def __init__(
        self,
        client: Any,
        *,
        symbol: str,
        interval: str,
        interval_delta: timedelta,
        last_processed: datetime | None,
        history: int,
        stop_event: threading.Event,
        poll_seconds: float = 5.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        clock: Callable[[], float] = time.time,
        rewarm: bool = False,
    ) -> None:
        self.client = client
        self.symbol = symbol
        self.interval = interval
        self.step_ms = int(interval_delta.total_seconds() * 1000)
        self.last_open_ms = None if last_processed is None else epoch_ns(last_processed) // 10**6
        self.history = history
        self.stop_event = stop_event
        self.poll_seconds = poll_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.clock = clock
        self.failures = 0
        # Restart: where the first round re-reads the history of the last processed bar.
        self._rewarm_ms = (
            None
            if self.last_open_ms is None or not rewarm
            else self.last_open_ms - max(0, history - 1) * self.step_ms
        )

    def _request_start_ms(self) -> int:
        if self._rewarm_ms is not None:
            return self._rewarm_ms
        if self.last_open_ms is not None:
            return self.last_open_ms + self.step_ms
        # Fresh start: enough closed history to warm the model up.
        now_ms = int(self.clock() * 1000)
        return (now_ms // self.step_ms - self.history - 1) * self.step_ms

    def fetch_closed(self) -> list[FeedItem]:
        """One round of requests: every closed candle after the last one, oldest first."""
        from binance.exceptions import BinanceAPIException, BinanceRequestException

        try:
            refresh_clock(self.clock)
        except (BinanceAPIException, BinanceRequestException, FeedError) as exc:
            raise FeedError(f"server time request failed: {exc}") from exc
        items: list[FeedItem] = []
        while True:
            start = self._request_start_ms()
            try:
                rows = self.client.get_klines(
                    symbol=self.symbol,
                    interval=self.interval,
                    startTime=start,
                    limit=KLINES_PER_REQUEST,
                )
                if not isinstance(rows, list):
                    raise FeedError(f"klines answer is not a list: {str(rows)[:120]!r}")
                fresh = self._closed_new_candles(rows, int(self.clock() * 1000))
            except (BinanceAPIException, BinanceRequestException, FeedError) as exc:
                if not items:
                    raise FeedError(f"klines request failed: {exc}") from exc
                # Hand over what this round already got; the next round resumes after it.
                log.warning("klines request failed mid-backfill: %s", exc)
                return items
            items.extend(fresh)
            if len(rows) < KLINES_PER_REQUEST or not fresh:
                return items

    def _closed_new_candles(self, rows: list[Any], now_ms: int) -> list[FeedItem]:
        out: list[FeedItem] = []
        rewarming = self._rewarm_ms is not None
        for row in rows:
            candle, close_ms = parse_kline(row)
            open_ms = epoch_ns(candle.open_time) // 10**6
            if close_ms >= now_ms:
                break  # still forming: never trade on an open candle
            if self.last_open_ms is not None:
                if open_ms <= self.last_open_ms:
                    if rewarming:  # history the restarted engine primes itself with
                        out.append(FeedItem(candle, tradable=False))
                    else:
                        log.warning("feed repeated candle %s; ignored", candle.key)
                    continue
                expected = self.last_open_ms + self.step_ms
                if open_ms > expected:
                    log.error(
                        "exchange has no %s candles from %s to %s (%d missing)",
                        self.symbol,
                        utc_from_ms(expected).isoformat(),
                        candle.key,
                        (open_ms - expected) // self.step_ms,
                    )
            tradable = now_ms - close_ms < self.step_ms
            out.append(FeedItem(candle, tradable=tradable))
            self.last_open_ms = open_ms
        self._rewarm_ms = None
        return out

    def backoff_seconds(self) -> float:
        return min(self.backoff_max, self.backoff_initial * 2 ** max(0, self.failures - 1))

    def _wait_after_failure(self, exc: BaseException, error: str) -> Iterator[FeedItem]:
        """Back off (at least the exchange's Retry-After: retrying inside a 418 ban extends
        it), with a heartbeat carrying the error at least every HEARTBEAT_SECONDS."""
        wait = max(self.backoff_seconds(), min(retry_after_seconds(exc) or 0.0, RETRY_AFTER_MAX))
        log.warning(
            "klines feed error (attempt %d): %s; retrying in %.1fs", self.failures, exc, wait
        )
        deadline = time.monotonic() + wait
        while True:
            yield FeedItem(None, error=error)
            left = deadline - time.monotonic()
            if left <= 0 or self.stop_event.wait(min(left, HEARTBEAT_SECONDS)):
                return
            if deadline - time.monotonic() <= 0:
                return

    def __iter__(self) -> Iterator[FeedItem]:
        import requests

        while not self.stop_event.is_set():
            try:
                items = self.fetch_closed()
            except (FeedError, requests.RequestException, ValueError) as exc:
                self.failures += 1
                yield from self._wait_after_failure(exc, f"{type(exc).__name__}: {exc}"[:300])
                continue
            if self.failures:
                log.info("klines feed reconnected after %d failed attempt(s)", self.failures)
                self.failures = 0
            yield from items
            if not items:
                yield FeedItem(None)
            self.stop_event.wait(self.poll_seconds)
