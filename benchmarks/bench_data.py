"""Data layer figures: importing the three-year BTCUSDT hourly file, reading a year of 1m candles.

Run from the project root:  .venv/bin/python benchmarks/bench_data.py
Targets (issue 3): import < 1 s; read of 525,600 one-minute candles < 0.5 s.
Each figure is the best of a few runs; peak memory is measured in a separate
run under tracemalloc (which slows Python down, so it is not timed).
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data import import_klines_csv, read_candles
from engine.data.store import ReadResult, merge_candles

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MINUTES_PER_YEAR = 525_600
RUNS = 3


def best_time(action: Callable[[], object], runs: int = RUNS) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)


def peak_memory_mib(action: Callable[[], object]) -> float:
    tracemalloc.start()
    action()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def one_year_of_minutes() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    index = pd.date_range(
        "2024-01-01", periods=MINUTES_PER_YEAR, freq="1min", tz="UTC", name="open_time"
    )
    close = 40_000 * np.exp(np.cumsum(rng.normal(0, 5e-4, MINUTES_PER_YEAR)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 5e-4, MINUTES_PER_YEAR)) * close
    volume = rng.gamma(2.0, 5.0, MINUTES_PER_YEAR)
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": volume,
            "close_time": index + pd.Timedelta(minutes=1) - pd.Timedelta(milliseconds=1),
            "quote_volume": volume * close,
            "trades": rng.integers(10, 500, MINUTES_PER_YEAR).astype("float64"),
            "taker_buy_base": volume / 2,
            "taker_buy_quote": volume * close / 2,
        },
        index=index,
    )


def main() -> None:
    source = SHARED_DATA / "BTCUSDT-1h.csv"
    with tempfile.TemporaryDirectory() as folder:
        stores = iter(Path(folder) / f"import{i}" for i in range(RUNS + 1))

        def import_once() -> object:
            return import_klines_csv(source, next(stores), symbol="BTCUSDT", interval="1h")

        import_seconds = best_time(import_once)
        import_peak = peak_memory_mib(lambda: import_klines_csv(
            source, Path(folder) / "import-mem", symbol="BTCUSDT", interval="1h"))  # fmt: skip
        print(f"import BTCUSDT-1h.csv (26,279 rows, 3 years): {import_seconds:.3f} s "
              f"(target < 1 s), peak traced memory {import_peak:.1f} MiB")  # fmt: skip

        minutes_store = Path(folder) / "minutes"
        merge_candles(minutes_store, "BTCUSDT", "1m", one_year_of_minutes())
        file_size = (minutes_store / "candles" / "BTCUSDT" / "1m.parquet").stat().st_size

        def read_year() -> ReadResult:
            return read_candles(minutes_store, "BTCUSDT", "1m")

        read_seconds = best_time(read_year)
        rows = len(read_year().frame)
        read_peak = peak_memory_mib(read_year)
        print(f"read one year of 1m candles ({rows:,} rows, 10 columns, "
              f"Parquet {file_size / 2**20:.1f} MiB), content hash included: "
              f"{read_seconds:.3f} s (target < 0.5 s), "
              f"peak traced memory {read_peak:.1f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
