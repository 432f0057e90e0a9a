"""Building an in-process engine for tests (the subprocess tests use the real CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from engine.live.brokers import PaperBroker
from engine.live.config import RiskLimits
from engine.live.journal import Journal
from engine.live.risk import RiskManager
from engine.live.runner import TradingEngine
from engine.live.status import StatusReporter
from engine.strategies import BuyAndHold

ONE_HOUR = pd.Timedelta(hours=1)


class Alternating:
    """A stand-in strategy: long on even bars, flat on odd ones (a new order every bar)."""

    name = "alternating"

    def targets(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        return pd.Series(np.arange(len(candles)) % 2 == 0, index=candles.index, dtype=float)


def paper_engine(
    folder: Path,
    *,
    limits: RiskLimits | None = None,
    strategy: object | None = None,
    interval: pd.Timedelta = ONE_HOUR,
    broker: object | None = None,
) -> TradingEngine:
    journal = Journal(folder / "btcusdt-paper.jsonl")
    return TradingEngine(
        strategy=strategy or BuyAndHold(),
        predictor=None,
        broker=broker or PaperBroker(fee_bps=10.0, slippage_bps=5.0),
        journal=journal,
        risk=RiskManager(limits or RiskLimits(), past_order_times=journal.state.order_candles),
        status=StatusReporter(folder / "status.json", mode="paper"),
        symbol="BTCUSDT",
        interval=interval,
        history_size=4,
        initial_cash=10_000.0,
    )


def minute_candles(n: int, start: str = "2024-03-01", price: float = 50_000.0) -> pd.DataFrame:
    index = pd.date_range(start, periods=n, freq="1min", tz="UTC", name="open_time")
    close = price * (1 + 0.001 * np.sin(np.arange(n)))
    frame = pd.DataFrame({"open": close, "close": close, "volume": 1.0}, index=index)
    frame["high"], frame["low"] = frame["close"] * 1.001, frame["close"] * 0.999
    return frame[["open", "high", "low", "close", "volume"]]
