"""A fake Binance spot REST API on loopback, for python-binance pointed at it.

Market data endpoints as Binance serves them:

* ``GET /api/v3/ping``, ``GET /api/v3/time``
* ``GET /api/v3/exchangeInfo`` (optionally ``?symbol=``) with PRICE_FILTER,
  LOT_SIZE, MIN_NOTIONAL and NOTIONAL filters
* ``GET /api/v3/klines`` with ``symbol``, ``interval``, ``startTime``,
  ``endTime``, ``limit`` (default 500, capped at 1000), 12-field rows;
  unknown symbol -> HTTP 400 ``{"code": -1121, "msg": "Invalid symbol."}``

Candles are computed from a deterministic price curve, so any symbol, interval
and range is available without storage; or they are stored real candles
(``CandleTable.from_csv``, e.g. ../shared/data/BTCUSDT-1h.csv, optionally shifted
in time) for one interval. ``now_ms`` is the server's clock and the candle
containing it is served unfinished, as Binance does. The clock is fixed by default;
``PacedClock`` (tests/fakes/market_clock.py) makes it accelerated and paced by its
readers, for forward paper runs of days in about a minute.

As its own process (an engine on an SSH test host can reach it)::

    python -m tests.fakes.binance_server --port 0 --speed 20000 \
        --origin 2024-01-26T00:00:00Z [--candles-csv ../shared/data/BTCUSDT-1h.csv]

prints ``url http://127.0.0.1:PORT`` on its first line and serves until SIGTERM.

Fault injection (see http_fake): ``rate_limited()`` (429 + Retry-After),
``banned()`` (418), ``html_error()``, ``slow()``, and ``used_weight`` to set
the ``X-MBX-USED-WEIGHT-1M`` header.

Adding endpoints (orders, account) from another module
------------------------------------------------------
Routes live in a table keyed by method and path; a handler takes a
``FakeRequest`` and returns a ``FakeResponse``. Write an installer in its own
module and call it on the server, e.g. ``tests/fakes/binance_orders.py``::

    from tests.fakes.binance_server import FakeBinanceServer, binance_error
    from tests.fakes.http_fake import FakeRequest, FakeResponse

    def install_order_routes(server: FakeBinanceServer) -> None:
        @server.route("POST", "/api/v3/order")
        def new_order(request: FakeRequest) -> FakeResponse:
            params = request.form()        # query + url-encoded body (signed requests)
            if params.get("symbol") not in server.market.symbols:
                return binance_error(-1121, "Invalid symbol.")
            ...
            return FakeResponse.json({...})

        server.add_route("GET", "/api/v3/account", ...)
        server.add_route("GET", "/sapi/v1/account/apiRestrictions", ...)

    server = FakeBinanceServer(); install_order_routes(server)

python-binance sends ``/api/...`` to ``API_URL`` and ``/sapi/...`` to
``MARGIN_API_URL``; point both at ``server.url`` (+ ``/api`` / ``/sapi``).
Request weights for new paths go in ``server.weights``.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from tests.fakes.http_fake import FakeHttpServer, FakeRequest, FakeResponse, Fault
from tests.fakes.market_clock import FixedClock, PacedClock

INTERVAL_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
PAGE_CAP = 1000
DEFAULT_LIMIT = 500
# 2024-05-01 00:00:00 UTC: a fixed clock keeps tests deterministic.
DEFAULT_NOW_MS = 1_714_521_600_000


def binance_error(code: int, msg: str, status: int = 400) -> FakeResponse:
    return FakeResponse.json({"code": code, "msg": msg}, status=status)


def rate_limited(retry_after: int = 1, *, path: str | None = None, times: int | None = 1) -> Fault:
    body = {
        "code": -1003,
        "msg": "Too many requests; current limit is 6000 request weight per 1 MINUTE.",
    }
    response = FakeResponse.json(body, status=429, **{"Retry-After": str(retry_after)})
    return Fault(response, path=path, times=times)


def banned(retry_after: int = 120, *, path: str | None = None, times: int | None = 1) -> Fault:
    body = {"code": -1003, "msg": "Way too many requests; IP banned until further notice."}
    response = FakeResponse.json(body, status=418, **{"Retry-After": str(retry_after)})
    return Fault(response, path=path, times=times)


@dataclass(frozen=True)
class CandleTable:
    """Stored candles of one interval, served instead of the price curve.

    `open_ms` is sorted and unique; `values` has one row per bar: open, high, low, close,
    volume. Bars absent from the table are absent on the exchange too (a gap).
    """

    step_ms: int
    open_ms: np.ndarray
    values: np.ndarray

    @classmethod
    def from_csv(cls, path: Path | str, interval: str = "1h", *, shift_ms: int = 0) -> CandleTable:
        """A kline CSV (engine.data.csv_import layouts), every time moved by `shift_ms`."""
        from engine.data.csv_import import read_kline_csv

        frame = read_kline_csv(path, interval)
        frame = frame[~frame.index.duplicated(keep="last")].sort_index()
        opens = frame.index.asi8 // 1_000_000 + int(shift_ms)
        values = frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
        return cls(INTERVAL_MS[interval], opens.astype(np.int64), values)

    def rows(self, low: int, high: int, limit: int, *, forward: bool) -> np.ndarray:
        """Indexes of the bars opening in [low, high]: the first `limit` or the last ones."""
        first = int(np.searchsorted(self.open_ms, low, side="left"))
        last = int(np.searchsorted(self.open_ms, high, side="right"))
        if forward:
            return np.arange(first, min(last, first + limit))
        return np.arange(max(first, last - limit), last)


@dataclass
class FakeSymbol:
    symbol: str
    base_asset: str
    quote_asset: str
    listed_at_ms: int
    base_price: float = 30_000.0
    missing_open_times: set[int] = field(default_factory=set)
    tick_size: str = "0.01000000"
    step_size: str = "0.00001000"
    min_qty: str = "0.00001000"
    min_notional: str = "5.00000000"
    table: CandleTable | None = None


class FakeMarket:
    """Symbols and their deterministic candles."""

    def __init__(self) -> None:
        self.symbols: dict[str, FakeSymbol] = {}

    def add_symbol(
        self,
        symbol: str,
        *,
        listed_at_ms: int,
        base_asset: str | None = None,
        quote_asset: str = "USDT",
        base_price: float = 30_000.0,
        table: CandleTable | None = None,
    ) -> FakeSymbol:
        entry = FakeSymbol(
            symbol=symbol,
            base_asset=base_asset or symbol.removesuffix(quote_asset),
            quote_asset=quote_asset,
            listed_at_ms=listed_at_ms,
            base_price=base_price,
            table=table,
        )
        self.symbols[symbol] = entry
        return entry

    def price(self, entry: FakeSymbol, times_ms: np.ndarray) -> np.ndarray:
        if entry.table is not None:  # the open of the stored bar each time falls in
            table = entry.table
            index = np.searchsorted(table.open_ms, times_ms, side="right") - 1
            return table.values[np.clip(index, 0, len(table.open_ms) - 1), 0]
        days = times_ms / 86_400_000.0
        return entry.base_price * (
            1.0 + 0.05 * np.sin(days * 2 * math.pi / 7) + 0.01 * np.sin(days * 40)
        )

    def klines(
        self,
        entry: FakeSymbol,
        step: int,
        *,
        now_ms: int,
        start: int | None,
        end: int | None,
        limit: int,
    ) -> list[list[object]]:
        low = _align_up(max(entry.listed_at_ms, start or 0), step)
        high = min(now_ms, end if end is not None else now_ms) // step * step
        if high < low:
            return []
        if entry.table is not None:
            if step != entry.table.step_ms:
                return []  # stored candles exist for their own interval only
            found = entry.table.rows(low, high, limit, forward=start is not None)
            return [self._table_row(entry.table, int(i)) for i in found]
        # With startTime Binance pages forward from it; otherwise it serves the newest rows.
        forward = start is not None
        spare = (limit + len(entry.missing_open_times)) * step
        if forward:
            high = min(high, low + spare)
        else:
            low = max(low, high - spare)
        opens = np.arange(low, high + 1, step, dtype=np.int64)
        if entry.missing_open_times:
            opens = opens[~np.isin(opens, list(entry.missing_open_times))]
        opens = opens[:limit] if forward else opens[-limit:]
        return [self._row(entry, int(t), step) for t in opens]

    def _table_row(self, table: CandleTable, i: int) -> list[object]:
        open_ms, step = int(table.open_ms[i]), table.step_ms
        open_, high, low, close, volume = (float(v) for v in table.values[i])
        return [
            open_ms, f"{open_:.8f}", f"{high:.8f}", f"{low:.8f}", f"{close:.8f}",
            f"{volume:.8f}", open_ms + step - 1, f"{volume * close:.8f}", 100,
            f"{volume / 2:.8f}", f"{volume / 2 * close:.8f}", "0",
        ]  # fmt: skip

    def _row(self, entry: FakeSymbol, open_ms: int, step: int) -> list[object]:
        open_price, close_price = self.price(
            entry, np.array([open_ms, open_ms + step], dtype=np.float64)
        )
        high = max(open_price, close_price) * 1.002
        low = min(open_price, close_price) * 0.998
        volume = 10.0 + (open_ms // step) % 7
        trades = 100 + (open_ms // step) % 50
        return [
            open_ms,
            f"{open_price:.2f}",
            f"{high:.2f}",
            f"{low:.2f}",
            f"{close_price:.2f}",
            f"{volume:.5f}",
            open_ms + step - 1,
            f"{volume * close_price:.4f}",
            int(trades),
            f"{volume / 2:.5f}",
            f"{volume / 2 * close_price:.4f}",
            "0",
        ]


class FakeBinanceServer(FakeHttpServer):
    """Binance's public spot REST endpoints on 127.0.0.1."""

    def __init__(
        self,
        *,
        now_ms: int = DEFAULT_NOW_MS,
        clock: FixedClock | PacedClock | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.clock = clock if clock is not None else FixedClock(now_ms)
        self.market = FakeMarket()
        self.used_weight: int | None = None  # None: count the weights of requests served
        self.weights: dict[str, int] = {
            "/api/v3/ping": 1,
            "/api/v3/time": 1,
            "/api/v3/exchangeInfo": 20,
            "/api/v3/klines": 2,
        }
        self._weight_total = 0
        self._weight_lock = threading.Lock()
        self.add_route("GET", "/api/v3/ping", lambda request: FakeResponse.json({}))
        self.add_route(
            "GET", "/api/v3/time", lambda request: FakeResponse.json({"serverTime": self.now_ms})
        )
        self.add_route("GET", "/api/v3/exchangeInfo", self._exchange_info)
        self.add_route("GET", "/api/v3/klines", self._klines)

    @property
    def now_ms(self) -> int:
        """The server's clock (``/api/v3/time``); settable when the clock is fixed."""
        return self.clock.now_ms()

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        if not isinstance(self.clock, FixedClock):
            raise TypeError("a paced clock cannot be set; it follows its readers")
        self.clock.value = int(value)

    @property
    def api_url(self) -> str:
        """What python-binance's ``API_URL`` should be."""
        return self.url + "/api"

    def klines_requests(self) -> list[FakeRequest]:
        return self.requests_to("/api/v3/klines")

    def decorate(self, request: FakeRequest, response: FakeResponse) -> FakeResponse:
        with self._weight_lock:
            self._weight_total += self.weights.get(request.path, 1)
            used = self.used_weight if self.used_weight is not None else self._weight_total
        response.headers.setdefault("X-MBX-USED-WEIGHT-1M", str(used))
        return response

    def _exchange_info(self, request: FakeRequest) -> FakeResponse:
        wanted = request.query.get("symbol")
        if wanted is not None and wanted not in self.market.symbols:
            return binance_error(-1121, "Invalid symbol.")
        symbols = [s for s in self.market.symbols.values() if wanted in (None, s.symbol)]
        return FakeResponse.json(
            {
                "timezone": "UTC",
                "serverTime": self.now_ms,
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": 6000,
                    },
                    {
                        "rateLimitType": "ORDERS",
                        "interval": "SECOND",
                        "intervalNum": 10,
                        "limit": 100,
                    },
                ],
                "exchangeFilters": [],
                "symbols": [_symbol_info(s) for s in symbols],
            }
        )

    def _klines(self, request: FakeRequest) -> FakeResponse:
        query = request.query
        entry = self.market.symbols.get(query.get("symbol", ""))
        if entry is None:
            return binance_error(-1121, "Invalid symbol.")
        step = INTERVAL_MS.get(query.get("interval", ""))
        if step is None:
            return binance_error(-1120, "Invalid interval.")
        try:
            limit = min(int(query.get("limit", DEFAULT_LIMIT)), PAGE_CAP)
            start = int(query["startTime"]) if "startTime" in query else None
            end = int(query["endTime"]) if "endTime" in query else None
        except ValueError:
            return binance_error(-1100, "Illegal characters found in a parameter.")
        if start is not None:
            self.clock.acknowledge(start, step)  # the reader has every bar before `start`
        rows = self.market.klines(
            entry, step, now_ms=self.now_ms, start=start, end=end, limit=limit
        )
        return FakeResponse.json(rows)


def _align_up(ms: int, step: int) -> int:
    return -(-ms // step) * step


def _symbol_info(entry: FakeSymbol) -> dict[str, object]:
    return {
        "symbol": entry.symbol,
        "status": "TRADING",
        "baseAsset": entry.base_asset,
        "baseAssetPrecision": 8,
        "quoteAsset": entry.quote_asset,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": entry.tick_size,
                "maxPrice": "1000000.00000000",
                "tickSize": entry.tick_size,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": entry.min_qty,
                "maxQty": "9000.00000000",
                "stepSize": entry.step_size,
            },
            {
                "filterType": "MIN_NOTIONAL",
                "minNotional": entry.min_notional,
                "applyToMarket": True,
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": entry.min_notional,
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
    }


def _utc_ms(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone (e.g. Z)")
    return int(moment.timestamp() * 1000)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.binance_server",
        description="A fake Binance spot API on an accelerated clock paced by its readers.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--speed", type=float, default=20_000.0, help="clock speed-up")
    parser.add_argument("--origin", type=_utc_ms, required=True, help="clock start, ISO 8601")
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="keep the clock here, so a restarted fake resumes it instead of going back",
    )
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--interval", default="1h", choices=sorted(INTERVAL_MS))
    parser.add_argument("--candles-csv", type=Path, default=None, help="serve stored candles")
    parser.add_argument(
        "--candles-at-origin",
        type=_utc_ms,
        default=None,
        help="with --candles-csv: the stored bar served at --origin (default: no shift)",
    )
    return parser


def server_from_args(args: argparse.Namespace) -> FakeBinanceServer:
    step = INTERVAL_MS[args.interval]
    clock = PacedClock(origin_ms=args.origin, speed=args.speed, step_ms=step)
    server = FakeBinanceServer(clock=clock, port=args.port)
    server.host = args.host
    if args.candles_csv is None:
        server.market.add_symbol(args.symbol, listed_at_ms=args.origin - 5000 * step)
        return server
    shift = 0 if args.candles_at_origin is None else args.origin - args.candles_at_origin
    table = CandleTable.from_csv(args.candles_csv, args.interval, shift_ms=shift)
    server.market.add_symbol(args.symbol, listed_at_ms=int(table.open_ms[0]), table=table)
    return server


def _save_clock(clock: PacedClock, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(clock.snapshot()))
    temporary.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    server = server_from_args(args)
    clock = server.clock
    assert isinstance(clock, PacedClock)
    if args.state_file is not None and args.state_file.exists():
        clock.restore(json.loads(args.state_file.read_text()))
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"url {server.url}", flush=True)
    # Saved a few times a second (a killed fake loses at most that), and at the end.
    while not stop.wait(0.2):
        if args.state_file is not None:
            _save_clock(clock, args.state_file)
    server.stop()
    if args.state_file is not None:
        _save_clock(clock, args.state_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
