"""A fake Fear & Greed API (alternative.me's ``GET /fng/?limit=N``) on loopback.

Answers as the real API does: newest day first, values and timestamps as
strings, ``time_until_update`` on the newest entry only, and
``metadata.error`` null. ``limit=0`` returns the whole history. Faults come
from http_fake (429 via ``rate_limited``, ``html_error``, ``slow``), and
``api_error()`` makes the API report an error in its metadata.

With a clock (``now_ms``, e.g. the fake Binance server's accelerated one), days not yet
published by the clock's time are not served, as the real API cannot know tomorrow. As its
own process, serving a stored series on the fake exchange's clock::

    python -m tests.fakes.fng_server --port 0 --sentiment-csv ../shared/data/fear_greed_index.csv \
        [--binance-url http://127.0.0.1:PORT]

prints ``url http://127.0.0.1:PORT`` on its first line and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.http_fake import FakeHttpServer, FakeRequest, FakeResponse, Fault

CLASSIFICATIONS = (
    (25, "Extreme Fear"),
    (46, "Fear"),
    (55, "Neutral"),
    (75, "Greed"),
    (101, "Extreme Greed"),
)


@dataclass(frozen=True)
class IndexEntry:
    timestamp: int  # Unix seconds, as published
    value: int


def classify(value: int) -> str:
    return next(label for upper, label in CLASSIFICATIONS if value < upper)


def rate_limited(retry_after: int = 1, *, times: int | None = 1) -> Fault:
    response = FakeResponse(
        status=429,
        body="Too Many Requests",
        headers={"Retry-After": str(retry_after)},
        content_type="text/plain",
    )
    return Fault(response, path="/fng/", times=times)


def api_error(message: str = "Limit must be an integer", *, times: int | None = 1) -> Fault:
    body = {"name": "Fear and Greed Index", "data": [], "metadata": {"error": message}}
    return Fault(FakeResponse.json(body), path="/fng/", times=times)


class FakeFearGreedServer(FakeHttpServer):
    def __init__(
        self,
        entries: list[IndexEntry] | None = None,
        *,
        now_ms: Callable[[], int] | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.entries = sorted(entries or [], key=lambda e: e.timestamp)
        self.now_ms = now_ms
        self.add_route("GET", "/fng/", self._fng)

    def _fng(self, request: FakeRequest) -> FakeResponse:
        try:
            limit = int(request.query.get("limit", "1"))
        except ValueError:
            return FakeResponse.json(
                {
                    "name": "Fear and Greed Index",
                    "data": [],
                    "metadata": {"error": "Limit must be an integer"},
                }
            )
        published = self.entries
        if self.now_ms is not None:
            now_s = self.now_ms() / 1000
            published = [e for e in self.entries if e.timestamp <= now_s]
        newest_first = list(reversed(published))
        chosen = newest_first if limit <= 0 else newest_first[:limit]
        data = [
            {
                "value": str(entry.value),
                "value_classification": classify(entry.value),
                "timestamp": str(entry.timestamp),
            }
            for entry in chosen
        ]
        if data:
            data[0]["time_until_update"] = "12345"
        return FakeResponse.json(
            {"name": "Fear and Greed Index", "data": data, "metadata": {"error": None}}
        )


def entries_from_csv(path: Path | str, *, shift_days: int = 0) -> list[IndexEntry]:
    """The stored daily series (engine.data.csv_import layouts) as published entries,
    moved by whole days (as the fake exchange's candles may be moved)."""
    from engine.data.csv_import import read_sentiment_csv

    series = read_sentiment_csv(path)
    shift = shift_days * 86_400
    return [
        IndexEntry(int(moment.timestamp()) + shift, round(float(value)))
        for moment, value in series.dropna().items()
    ]


def binance_time(url: str) -> Callable[[], int]:
    """The fake (or real) exchange's server time, as the clock of this server."""

    def now_ms() -> int:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v3/time", timeout=5) as answer:
            return int(json.load(answer)["serverTime"])

    return now_ms


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.fng_server",
        description="A fake Fear & Greed API serving a stored series.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--sentiment-csv", type=Path, required=True)
    parser.add_argument("--binance-url", default=None, help="serve days up to this clock's time")
    parser.add_argument("--shift-days", type=int, default=0, help="move the series by N days")
    args = parser.parse_args(argv)
    clock = binance_time(args.binance_url) if args.binance_url else None
    entries = entries_from_csv(args.sentiment_csv, shift_days=args.shift_days)
    server = FakeFearGreedServer(entries, now_ms=clock, port=args.port)
    server.host = args.host
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"url {server.url}", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
