"""Candles from Binance through python-binance's ``Client.get_historical_klines``.

The range is cut into windows of a few pages, each fetched with
``get_historical_klines`` bounded by ``end_str`` and merged into the store
before the next one starts. An interruption therefore costs at most one
window, the store stays valid, and the next fetch starts after the last stored
candle. Two things python-binance does not do are done here: bounded retries
(429 with Retry-After, 418, 5xx, HTML error pages, timeouts) and slowing down
when the used-weight header nears Binance's per-minute limit.

The ``limit`` trap: ``get_historical_klines(limit=N)`` with N above Binance's
page size (1000) sends ``limit=N``, receives 1000 rows, takes the short page
for the last one and stops, silently returning one page. We never pass a
limit; windows are bounded by ``end_str`` instead, and ``page_size`` above
1000 is refused.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import requests

from engine.data.errors import DataError, SourceError, UnknownSymbolError
from engine.data.frames import INDEX_NAME
from engine.data.intervals import interval_ms
from engine.data.retry import Retry, RetryPolicy, call_with_retries, retry_after_seconds
from engine.data.store import MergeResult, checked_symbol, merge_candles, stored_candle_range
from engine.data.validation import ValidationPolicy, ValidationReport, apply_candle_policy

if TYPE_CHECKING:
    # python-binance takes ~0.3 s to import: it is loaded only when something is fetched.
    from binance.client import Client

logger = logging.getLogger(__name__)

ENV_BINANCE_API_URL = "TRADEBOT_BINANCE_API_URL"
DEFAULT_BINANCE_API_URL = "https://api.binance.com"
BINANCE_PAGE_SIZE = 1000
# Binance spot allows 6000 request weight per minute per IP; slow down well before it.
WEIGHT_LIMIT_PER_MINUTE = 6000
WEIGHT_SLOWDOWN_SHARE = 0.8
INVALID_SYMBOL_CODE = -1121

Progress = Callable[[int, int], None]


@dataclass
class FetchResult:
    symbol: str
    interval: str
    candles_stored: int = 0
    windows: int = 0
    first_fetched: str | None = None
    last_fetched: str | None = None
    reports: list[ValidationReport] = field(default_factory=list)
    merges: list[MergeResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "interval": self.interval,
            "candles_stored": self.candles_stored,
            "windows": self.windows,
            "first_fetched": self.first_fetched,
            "last_fetched": self.last_fetched,
            "rows_in_store": self.merges[-1].rows_after if self.merges else None,
            "dropped_rows": sum(r.dropped_rows for r in self.reports),
            "filled_rows": sum(r.filled_rows for r in self.reports),
            "gaps": sum(r.count("gaps") for r in self.reports),
        }


def binance_api_url(api_url: str | None = None) -> str:
    """Root URL of the REST API: the argument, else $TRADEBOT_BINANCE_API_URL, else Binance.

    Given as the root (``https://api.binance.com``); a trailing ``/api`` is accepted too.
    """
    url = (api_url or os.environ.get(ENV_BINANCE_API_URL) or DEFAULT_BINANCE_API_URL).rstrip("/")
    return url.removesuffix("/api")


def make_client(api_url: str | None = None, *, timeout: float = 10.0) -> Client:
    """A python-binance Client for public market data, pointed at ``binance_api_url(api_url)``."""
    from binance.client import Client

    # ping=False: the constructor would otherwise call the default URL before we can redirect it.
    client = Client(api_key=None, api_secret=None, ping=False, requests_params={"timeout": timeout})
    client.API_URL = binance_api_url(api_url) + "/api"
    return client


def fetch_klines(
    data_dir: Path | str,
    symbol: str,
    interval: str,
    *,
    since: pd.Timestamp | str | None = None,
    until: pd.Timestamp | str | None = None,
    client: Client | None = None,
    api_url: str | None = None,
    policy: ValidationPolicy | None = None,
    retry: RetryPolicy | None = None,
    page_size: int = BINANCE_PAGE_SIZE,
    pages_per_window: int = 3,
    first_fetch_lookback: pd.Timedelta | None = None,
    progress: Progress | None = None,
) -> FetchResult:
    """Fetch the closed candles the store lacks in ``[since, until)`` and merge them in.

    With candles stored, fetching resumes after the last one (and also covers
    ``since`` up to the first one when ``since`` is earlier). With nothing
    stored, ``since`` is required unless ``first_fetch_lookback`` says how far
    back from Binance's clock to start. ``until`` defaults to Binance's clock.
    """
    checked_symbol(symbol)
    if not 1 <= page_size <= BINANCE_PAGE_SIZE:
        raise ValueError(
            f"page_size {page_size} is outside 1..{BINANCE_PAGE_SIZE}: Binance returns at most "
            f"{BINANCE_PAGE_SIZE} candles per page, and python-binance stops after one page "
            "when asked for more"
        )
    policy = policy or ValidationPolicy()
    retry = retry or RetryPolicy()
    client = client or make_client(api_url)
    step = interval_ms(interval)
    server_now = _server_time_ms(client, retry)
    last_open = server_now - step if until is None else min(_ms(until), server_now) - step
    nothing_stored = stored_candle_range(data_dir, symbol, interval) is None
    if since is None and first_fetch_lookback is not None and nothing_stored:
        since = _ts(server_now) - first_fetch_lookback
    ranges = _missing_ranges(data_dir, symbol, interval, since, last_open, step)
    result = FetchResult(symbol, interval)
    total = sum((end - start) // step + 1 for start, end in ranges)
    done = 0
    window = page_size * pages_per_window * step
    for range_start, range_end in ranges:
        for window_start in range(range_start, range_end + 1, window):
            window_end = min(window_start + window - step, range_end)
            rows = _fetch_window(client, symbol, interval, window_start, window_end, retry)
            frame = klines_to_frame(rows, closed_before_ms=server_now)
            frame = frame[(frame.index >= _ts(window_start)) & (frame.index <= _ts(window_end))]
            _store_window(data_dir, symbol, interval, frame, policy, result)
            done += (window_end - window_start) // step + 1
            if progress:
                progress(done, total)
    return result


def klines_to_frame(rows: list[list[Any]], *, closed_before_ms: int | None = None) -> pd.DataFrame:
    """Binance's 12-field kline rows as a candle frame; drops candles not closed by then."""
    columns = [
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "close_time",
        "quote_volume",
        "trades",
        "taker_buy_base",
        "taker_buy_quote",
        "ignore",
    ]
    raw = pd.DataFrame(rows, columns=columns)
    if closed_before_ms is not None:
        # A candle is final only once its close time has passed on Binance's clock.
        raw = raw[raw["close_time"].astype("int64") < closed_before_ms]
    frame = pd.DataFrame(
        {name: pd.to_numeric(raw[name], errors="coerce") for name in columns[1:6] + columns[7:11]}
    )
    frame["close_time"] = pd.to_datetime(raw["close_time"].astype("int64"), unit="ms", utc=True)
    frame.index = pd.DatetimeIndex(
        pd.to_datetime(raw["open_time"].astype("int64"), unit="ms", utc=True), name=INDEX_NAME
    )
    return frame


def _store_window(
    data_dir: Path | str,
    symbol: str,
    interval: str,
    frame: pd.DataFrame,
    policy: ValidationPolicy,
    result: FetchResult,
) -> None:
    result.windows += 1
    if frame.empty:
        return
    source = f"Binance {symbol} {interval} {frame.index[0]:%Y-%m-%d %H:%M} onwards"
    clean, report = apply_candle_policy(frame, interval, policy, source=source)
    result.reports.append(report)
    if clean.empty:
        return
    result.merges.append(merge_candles(data_dir, symbol, interval, clean))
    result.candles_stored += len(clean)
    result.first_fetched = result.first_fetched or _iso(clean.index[0])
    result.last_fetched = _iso(clean.index[-1])


def _missing_ranges(
    data_dir: Path | str,
    symbol: str,
    interval: str,
    since: pd.Timestamp | str | None,
    last_open: int,
    step: int,
) -> list[tuple[int, int]]:
    """Inclusive open-time ranges (ms) the store lacks, ending at ``last_open``."""
    stored = stored_candle_range(data_dir, symbol, interval)
    since_ms = None if since is None else _align_up(_ms(since), step)
    if stored is None:
        if since_ms is None:
            raise DataError(
                f"no {symbol} {interval} candles are stored yet: give a start (since) for the fetch"
            )
        return [(since_ms, last_open)] if since_ms <= last_open else []
    first, last = (_ms(stamp) for stamp in stored)
    ranges = []
    if since_ms is not None and since_ms < first:
        ranges.append((since_ms, min(first - step, last_open)))
    resume_from = max(last + step, since_ms or 0)
    if resume_from <= last_open:
        ranges.append((resume_from, last_open))
    return ranges


def _fetch_window(
    client: Client, symbol: str, interval: str, start_ms: int, end_ms: int, retry: RetryPolicy
) -> list[list[Any]]:
    what = f"Binance klines {symbol} {interval} from {_iso(_ts(start_ms))}"

    def call() -> list[list[Any]]:
        try:
            rows = client.get_historical_klines(
                symbol, interval, start_str=start_ms, end_str=end_ms
            )
        except IndexError:
            # python-binance indexes the first kline ever without checking: the
            # symbol exists but has no candles at all.
            return []
        _slow_down_if_weight_is_high(client, retry)
        return rows

    return call_with_retries(
        call, retry=retry, what=what, classify=lambda exc: _classify(exc, symbol, what)
    )


def _server_time_ms(client: Client, retry: RetryPolicy) -> int:
    what = "Binance server time"
    reply = call_with_retries(
        client.get_server_time,
        retry=retry,
        what=what,
        classify=lambda exc: _classify(exc, "", what),
    )
    return int(reply["serverTime"])


def _classify(exc: Exception, symbol: str, what: str) -> Retry | Exception:
    from binance.exceptions import BinanceAPIException, BinanceRequestException

    if isinstance(exc, BinanceAPIException):
        status = exc.status_code
        if exc.code == INVALID_SYMBOL_CODE:
            return UnknownSymbolError(symbol, f"code {exc.code}: {exc.message}")
        if status in (418, 429):
            label = "rate limit exceeded" if status == 429 else "IP banned for exceeding limits"
            wait = retry_after_seconds(exc.response.headers)
            return Retry(f"HTTP {status} ({label})", wait=wait)
        if status >= 500:
            return Retry(f"HTTP {status}: {_short(exc.message)}")
        return SourceError(
            f"{what}: Binance refused the request: HTTP {status} code {exc.code}: {exc.message}"
        )
    if isinstance(exc, BinanceRequestException):
        return Retry(f"answer is not JSON: {_short(exc.message)}")
    if isinstance(exc, requests.Timeout):
        return Retry(f"timed out ({exc.__class__.__name__})")
    if isinstance(exc, requests.ConnectionError):
        return Retry(f"connection failed ({_short(str(exc))})")
    return exc


def _slow_down_if_weight_is_high(client: Client, retry: RetryPolicy) -> None:
    """Sleep to the next minute once the used weight passes 80% of the per-minute limit."""
    response = getattr(client, "response", None)
    used = _header_int(response, "X-MBX-USED-WEIGHT-1M") if response is not None else None
    if used is None or used < WEIGHT_LIMIT_PER_MINUTE * WEIGHT_SLOWDOWN_SHARE:
        return
    # Binance counts weight per clock minute: waiting for the next one resets it.
    wait = min(retry.max_delay, 60.0 - (time.time() % 60.0) + 1.0)
    logger.warning(
        "Binance used weight %d of %d: pausing %.1f s", used, WEIGHT_LIMIT_PER_MINUTE, wait
    )
    retry.sleep(wait)


def _header_int(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _ms(value: pd.Timestamp | str) -> int:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)


def _ts(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def _align_up(ms: int, step: int) -> int:
    return -(-ms // step) * step


def _iso(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
