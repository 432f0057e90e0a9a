"""Fixtures for the data layer: a store folder, fake servers, and a byte-exact store snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from engine.data import RetryPolicy, import_klines_csv
from tests.fakes.binance_server import FakeBinanceServer
from tests.fakes.fng_server import FakeFearGreedServer, IndexEntry

HOUR_MS = 3_600_000


class SleepRecorder:
    """Stands in for time.sleep in RetryPolicy: records the waits instead of spending them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def fast_retry(sleeps: SleepRecorder) -> RetryPolicy:
    return RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=30.0, sleep=sleeps)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def binance() -> Iterator[FakeBinanceServer]:
    with FakeBinanceServer() as server:
        server.market.add_symbol("BTCUSDT", listed_at_ms=server.now_ms - 3500 * HOUR_MS)
        yield server


@pytest.fixture
def fng() -> Iterator[FakeFearGreedServer]:
    days = pd.date_range("2024-01-01", "2024-03-31", freq="D", tz="UTC")
    missing = {pd.Timestamp("2024-02-10", tz="UTC"), pd.Timestamp("2024-02-11", tz="UTC")}
    entries = [
        IndexEntry(timestamp=int(day.timestamp()), value=20 + (i * 7) % 70)
        for i, day in enumerate(days)
        if day not in missing
    ]
    with FakeFearGreedServer(entries) as server:
        yield server


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its exact bytes."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def filled_store(data_dir: Path, shared_data_dir: Path) -> Path:
    """A store holding the real BTCUSDT hourly candles."""
    import_klines_csv(shared_data_dir / "BTCUSDT-1h.csv", data_dir, symbol="BTCUSDT", interval="1h")
    return data_dir
