"""The engine loop on bad input: repeated, malformed and missing candles never trade."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd

from engine.live.candles import candles_from_frame
from engine.live.runner import order_quantity
from tests.engine.live.helpers import minute_candles, paper_engine


def test_a_repeated_candle_is_processed_once(tmp_path: Path, caplog) -> None:
    engine = paper_engine(tmp_path, interval=pd.Timedelta(minutes=1))
    bars = candles_from_frame(minute_candles(3))
    engine.on_candle(bars[0])
    engine.on_candle(bars[1])
    records_before = len((tmp_path / "btcusdt-paper.jsonl").read_text().splitlines())
    with caplog.at_level(logging.WARNING, logger="engine.live"):
        repeated = engine.on_candle(bars[1])
    assert repeated.skipped == "already processed" and not repeated.fills
    assert "duplicate candle" in caplog.text
    assert len((tmp_path / "btcusdt-paper.jsonl").read_text().splitlines()) == records_before


def test_a_malformed_candle_is_not_traded_on(tmp_path: Path, caplog) -> None:
    engine = paper_engine(tmp_path, interval=pd.Timedelta(minutes=1))
    bars = candles_from_frame(minute_candles(3))
    engine.on_candle(bars[0])  # buy_and_hold decides to buy at the next open
    broken = dataclasses.replace(bars[1], open=float("nan"))
    with caplog.at_level(logging.ERROR, logger="engine.live"):
        result = engine.on_candle(broken)
    assert result.skipped and "open is not a finite number" in result.skipped
    assert engine.quantity == 0.0, "no fill at a NaN price"
    assert "bad candle" in caplog.text
    engine.on_candle(bars[2])  # the next good bar executes the standing decision
    assert engine.quantity > 0


def test_a_gap_is_logged_loudly_and_status_stays_consistent(tmp_path: Path, caplog) -> None:
    engine = paper_engine(tmp_path, interval=pd.Timedelta(minutes=1))
    bars = candles_from_frame(minute_candles(5))
    engine.on_candle(bars[0])
    with caplog.at_level(logging.ERROR, logger="engine.live"):
        engine.on_candle(bars[3])
    assert "2 missing between" in caplog.text
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["last_candle"] == bars[3].key
    assert status["position"] == engine.quantity > 0


def test_sizing_spends_exactly_the_cash_like_the_backtester() -> None:
    quantity = order_quantity(
        weight=1.0, cash=10_000.0, quantity=0.0, price=100.0, slippage_bps=5.0, fee_bps=10.0
    )
    fill = 100.0 * 1.0005
    assert abs(quantity * fill * 1.001 - 10_000.0) < 1e-9  # notional + fee = all the cash
    assert (
        order_quantity(
            weight=0.0, cash=0.0, quantity=2.0, price=100.0, slippage_bps=5.0, fee_bps=10.0
        )
        == -2.0
    )


def test_a_restart_catching_up_on_processed_bars_still_reports_data(tmp_path: Path) -> None:
    """The deploy health check reads `last_data_at`: replaying bars the journal already holds
    is data arriving, so the status file must say so before the first new bar."""
    bars = candles_from_frame(minute_candles(6))
    first = paper_engine(tmp_path, interval=pd.Timedelta(minutes=1))
    for bar in bars:
        first.on_candle(bar)
    first.journal.close()

    restarted = paper_engine(tmp_path, interval=pd.Timedelta(minutes=1))
    restarted.publish_status()
    assert json.loads((tmp_path / "status.json").read_text())["last_data_at"] is None
    assert restarted.on_candle(bars[0]).skipped == "already processed"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["last_data_at"] is not None
    assert status["last_candle"] == bars[-1].open_time.isoformat()
