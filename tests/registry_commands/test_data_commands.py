"""The market data commands and the refresh task, against real files and the fake servers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.test import override_settings

from engine.data import read_candles, read_sentiment
from models_registry.tasks.data import MarketDataRefreshError, refresh_market_data
from tests.fakes.binance_server import FakeBinanceServer
from tests.fakes.fng_server import FakeFearGreedServer, IndexEntry

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_DATA = PROJECT_ROOT / "demo" / "data"
HOUR_MS = 3_600_000


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def run_json(name: str, *args: str) -> dict[str, Any]:
    return json.loads(run(name, *args, "--json"))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def binance() -> Iterator[FakeBinanceServer]:
    with FakeBinanceServer() as server:
        server.market.add_symbol("BTCUSDT", listed_at_ms=server.now_ms - 1200 * HOUR_MS)
        server.market.add_symbol(
            "ETHUSDT", listed_at_ms=server.now_ms - 1200 * HOUR_MS, base_price=3000.0
        )
        yield server


@pytest.fixture
def fng() -> Iterator[FakeFearGreedServer]:
    days = pd.date_range("2024-03-01", "2024-04-30", freq="D", tz="UTC")
    entries = [IndexEntry(int(d.timestamp()), 30 + i % 40) for i, d in enumerate(days)]
    with FakeFearGreedServer(entries) as server:
        yield server


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("import_klines", ["--symbol", "--interval", "--on-bad-rows", "--on-gaps", "--json"]),
        ("fetch_klines", ["--since", "--api-url", "--data-dir", "--json"]),
        ("import_sentiment", ["--data-dir", "--json"]),
        ("fetch_sentiment", ["--api-url", "--json"]),
        ("data_report", ["--interval", "--start", "--json"]),
    ],
)
def test_every_command_has_help(command: str, expected: list[str]) -> None:
    parser = load_command_class("models_registry", command).create_parser("manage.py", command)
    text = parser.format_help()
    for option in expected:
        assert option in text


def test_import_klines_reports_the_real_gap_as_json(shared_data_dir: Path, store: Path) -> None:
    summary = run_json(
        "import_klines", str(shared_data_dir / "ETHUSDT-1h.csv"),
        "--symbol", "ETHUSDT", "--interval", "1h", "--data-dir", str(store),
    )  # fmt: skip
    assert summary["rows_in_store"] == 26_279
    assert summary["validation"]["issues"]["gaps"] == {
        "count": 1, "first": ["2023-03-24T13:00:00Z"], "missing_rows": 1,
    }  # fmt: skip


def test_import_reads_the_store_folder_from_settings(shared_data_dir: Path, store: Path) -> None:
    with override_settings(TRADEBOT_DATA_DIR=store):
        text = run(
            "import_klines",
            str(shared_data_dir / "BTCUSDT-1h.csv"),
            "--symbol",
            "BTCUSDT",
            "--interval",
            "1h",
        )
    assert "26279 stored" in text
    assert "gaps in the input: 1 (1 missing rows), first at 2023-03-24T13:00:00Z" in text
    assert (store / "candles" / "BTCUSDT" / "1h.parquet").exists()


def test_on_gaps_fill_alone_fills_the_missing_hour_and_says_none_is_left(
    shared_data_dir: Path, store: Path
) -> None:
    args = ("import_klines", str(shared_data_dir / "BTCUSDT-1h.csv"), "--symbol", "BTCUSDT",
            "--interval", "1h", "--data-dir", str(store), "--on-gaps", "fill")  # fmt: skip
    text = run(*args)
    assert "26280 stored" in text
    assert "filled 1 missing rows; 0 left unfilled" in text
    report = run("data_report", "BTCUSDT", "--interval", "1h", "--data-dir", str(store))
    assert "26280 rows, no problems" in report


def test_on_gaps_fill_with_max_fill_zero_is_refused_naming_the_option(
    shared_data_dir: Path, store: Path
) -> None:
    with pytest.raises(CommandError, match="--max-fill must be at least 1 with --on-gaps fill"):
        run("import_klines", str(shared_data_dir / "BTCUSDT-1h.csv"), "--symbol", "BTCUSDT",
            "--interval", "1h", "--data-dir", str(store), "--on-gaps", "fill",
            "--max-fill", "0")  # fmt: skip
    assert not store.exists()


def test_bad_csv_becomes_a_command_error_naming_file_and_line(tmp_path: Path, store: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,open,high,low,close,volume\n2024-01-01 00:00:00,1,2,0.5,x,1\n")
    with pytest.raises(CommandError, match=r"bad\.csv, line 2: close 'x' is not a number"):
        run(
            "import_klines",
            str(bad),
            "--symbol",
            "BTCUSDT",
            "--interval",
            "1h",
            "--data-dir",
            str(store),
        )
    assert not store.exists()


def test_demo_data_imports_through_the_commands(store: Path) -> None:
    assert sum(p.stat().st_size for p in DEMO_DATA.glob("*.gz")) < 5 * 1024 * 1024
    klines = run_json(
        "import_klines", str(DEMO_DATA / "BTCUSDT-1h.csv.gz"),
        "--symbol", "BTCUSDT", "--interval", "1h", "--data-dir", str(store),
    )  # fmt: skip
    sentiment = run_json(
        "import_sentiment", str(DEMO_DATA / "fear_greed_index.csv.gz"), "--data-dir", str(store)
    )
    assert klines["rows_in_store"] == 26_279
    assert sentiment["rows_in_store"] == 2644
    assert sentiment["validation"]["issues"]["gaps"]["count"] == 2


def test_fetch_klines_against_the_fake_binance(binance: FakeBinanceServer, store: Path) -> None:
    summary = run_json(
        "fetch_klines", "BTCUSDT", "--interval", "1h", "--since", "2024-01-01",
        "--api-url", binance.url, "--data-dir", str(store),
    )  # fmt: skip
    assert summary["candles_stored"] == 1200
    again = run(
        "fetch_klines",
        "BTCUSDT",
        "--interval",
        "1h",
        "--api-url",
        binance.url,
        "--data-dir",
        str(store),
    )
    assert "up to date" in again


def test_fetch_klines_unknown_symbol_is_a_clear_command_error(
    binance: FakeBinanceServer, store: Path
) -> None:
    with pytest.raises(CommandError, match="Binance does not know the symbol 'DOGEUSDT'"):
        run(
            "fetch_klines", "DOGEUSDT", "--interval", "1h", "--since", "2024-04-01",
            "--api-url", binance.url, "--data-dir", str(store),
        )  # fmt: skip


def test_fetch_sentiment_and_data_report(
    binance: FakeBinanceServer, fng: FakeFearGreedServer, store: Path
) -> None:
    fetched = run_json("fetch_sentiment", "--api-url", fng.url, "--data-dir", str(store))
    assert fetched["days_in_store"] == 61
    run(
        "fetch_klines",
        "BTCUSDT",
        "--interval",
        "1h",
        "--since",
        "2024-01-01",
        "--api-url",
        binance.url,
        "--data-dir",
        str(store),
    )
    report = run_json("data_report", "BTCUSDT", "--interval", "1h", "--data-dir", str(store))
    assert report["rows"] == 1200
    assert report["content_hash"] == read_candles(store, "BTCUSDT", "1h").content_hash
    assert report["validation"]["ok"] is True
    assert report["sentiment"]["days"] == 61
    text = run("data_report", "BTCUSDT", "--interval", "1h", "--data-dir", str(store))
    assert f"content hash: {report['content_hash']}" in text


def test_data_report_on_an_empty_store_says_what_to_do(store: Path) -> None:
    with pytest.raises(
        CommandError, match=r"no BTCUSDT 1h candles stored .* import or fetch them first"
    ):
        run("data_report", "BTCUSDT", "--interval", "1h", "--data-dir", str(store))


def test_refresh_task_is_idempotent_and_safe_to_overlap(
    binance: FakeBinanceServer,
    fng: FakeFearGreedServer,
    store: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADEBOT_BINANCE_API_URL", binance.url)
    monkeypatch.setenv("TRADEBOT_FNG_API_URL", fng.url)
    with override_settings(
        TRADEBOT_DATA_DIR=store, TRADEBOT_SYMBOLS=["BTCUSDT", "ETHUSDT"], TRADEBOT_INTERVAL="1h"
    ):
        results: list[dict[str, Any]] = []
        threads = [
            threading.Thread(target=lambda: results.append(refresh_market_data())) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 2
        json.dumps(results)  # a JSON-able summary for the result backend
        hashes = {s: read_candles(store, s, "1h").content_hash for s in ("BTCUSDT", "ETHUSDT")}
        assert len(read_candles(store, "BTCUSDT", "1h").frame) == 1200
        again = refresh_market_data()
        assert again["candles"]["BTCUSDT"]["candles_stored"] == 0
        assert {s: read_candles(store, s, "1h").content_hash for s in hashes} == hashes
        assert len(read_sentiment(store).frame) == 61


def test_refresh_task_reports_a_failing_symbol_after_doing_the_others(
    binance: FakeBinanceServer,
    fng: FakeFearGreedServer,
    store: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADEBOT_BINANCE_API_URL", binance.url)
    monkeypatch.setenv("TRADEBOT_FNG_API_URL", fng.url)
    with (
        override_settings(TRADEBOT_DATA_DIR=store, TRADEBOT_SYMBOLS=["NOPEUSDT", "BTCUSDT"]),
        pytest.raises(MarketDataRefreshError, match="NOPEUSDT 1h: Binance does not know"),
    ):
        refresh_market_data()
    assert len(read_candles(store, "BTCUSDT", "1h").frame) == 1200
    assert refresh_market_data.name == "models_registry.refresh_market_data"
