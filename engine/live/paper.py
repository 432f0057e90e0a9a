"""In-process paper run over given candles: the same engine loop as the service, no process.

This is what the Celery paper-trading task calls. Decisions are made at each bar's close and
filled at the next bar's open with the backtester's costs, so the result can be compared
trade for trade with `engine.backtest.simulator.simulate` over the same bars.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from engine.live.brokers import BUY, PaperBroker
from engine.live.candles import candles_from_frame
from engine.live.config import RiskLimits
from engine.live.feeds import ReplayFeed
from engine.live.journal import Journal, journal_path
from engine.live.risk import RiskManager
from engine.live.runner import Trade, TradingEngine
from engine.live.status import StatusReporter
from engine.live.strategy import build_strategy

FILL_COLUMNS = ["time", "side", "quantity", "price", "fee", "reason"]


@dataclass
class PaperRunResult:
    fills: pd.DataFrame  # one row per fill: time (bar open), side, quantity, price, fee, reason
    trades: pd.DataFrame  # round trips, flat to flat, in the backtester's columns
    equity: pd.Series  # marked at each close
    position: pd.Series  # quantity held after each bar
    metrics: dict[str, Any]
    model_name: str | None
    model_version: int | None
    model_sha256: str | None
    journal: Path | None  # None when the run used a temporary journal


def _fills_frame(trades: list[Trade]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [(t.time, t.side, t.quantity, t.price, t.fee, t.reason) for t in trades],
        columns=FILL_COLUMNS,
    )
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def round_trips(fills: pd.DataFrame, index: pd.DatetimeIndex, last_close: float) -> pd.DataFrame:
    """Group fills into flat-to-flat trades shaped like the backtester's trades frame."""
    rows: list[dict[str, Any]] = []
    position = cash_flow = fees = bought = bought_value = sold = sold_value = 0.0
    entry_time = None
    peak = 0.0
    for fill in fills.itertuples(index=False):
        signed = fill.quantity if fill.side == BUY else -fill.quantity
        if entry_time is None:
            entry_time = fill.time
            bought = bought_value = sold = sold_value = fees = cash_flow = peak = 0.0
        if signed > 0:
            bought, bought_value = bought + fill.quantity, bought_value + fill.quantity * fill.price
        else:
            sold, sold_value = sold + fill.quantity, sold_value + fill.quantity * fill.price
        fees += fill.fee
        cash_flow -= signed * fill.price + fill.fee
        position += signed
        peak = max(peak, abs(position))
        if abs(position) * fill.price < 1e-9:
            rows.append(_trip(entry_time, fill.time, bought, bought_value, sold_value / sold, fees,
                              cash_flow, peak, "signal", index))  # fmt: skip
            position, entry_time = 0.0, None
    if entry_time is not None:
        pnl = cash_flow + position * last_close
        rows.append(_trip(entry_time, index[-1], bought, bought_value, last_close, fees, pnl, peak,
                          "open", index))  # fmt: skip
    return pd.DataFrame(rows, columns=[
        "entry_time", "exit_time", "side", "quantity", "entry_price", "exit_price",
        "fees", "pnl", "exit_reason", "bars_held",
    ])  # fmt: skip


def _trip(
    entry: pd.Timestamp,
    exit_: pd.Timestamp,
    bought: float,
    bought_value: float,
    exit_price: float,
    fees: float,
    pnl: float,
    peak: float,
    reason: str,
    index: pd.DatetimeIndex,
) -> dict[str, Any]:
    end = index.get_loc(exit_) if reason != "open" else len(index)
    return {
        "entry_time": entry,
        "exit_time": exit_,
        "side": "long",
        "quantity": peak,
        "entry_price": bought_value / bought if bought else float("nan"),
        "exit_price": exit_price,
        "fees": fees,
        "pnl": pnl,
        "exit_reason": reason,
        "bars_held": int(end - index.get_loc(entry)),
    }


def run_paper_replay(
    model_dir: Path | str | None,
    candles: pd.DataFrame,
    sentiment: pd.Series | None = None,
    *,
    strategy: str = "ml_basic",
    model_name: str | None = None,
    predictor: Any | None = None,
    initial_cash: float = 10_000.0,
    fee_bps: float = DEFAULT_FEE_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
    risk_limits: RiskLimits | None = None,
    journal_dir: Path | str | None = None,
    status_file: Path | str | None = None,
    strategy_params: dict[str, Any] | None = None,
    execute_on_close: bool = False,
    trade_from: pd.Timestamp | None = None,
) -> PaperRunResult:
    """Paper-trade `candles` bar by bar through the engine loop and report what happened.

    The model is loaded from `model_dir` with every start-up check (or `predictor` is used
    as given). `journal_dir` defaults to a temporary folder: pass one to keep the journal.

    `execute_on_close=True` places each decision's order at that bar's close, as the live
    engine does on a live feed (default: at the next bar's open, the backtester's rule);
    it is the replay to compare a forward paper run's journal with, fill for fill. Bars
    before `trade_from` only warm the model up, as a live engine's history does.
    """
    _check_replay_input(candles)
    if predictor is None and model_dir is not None:
        from engine.inference import OnnxPredictor

        predictor = OnnxPredictor.from_dir(model_dir, model_name)
    strategy_obj, strategy_predictor = build_strategy(
        strategy, model=predictor, fee_bps=fee_bps, slippage_bps=slippage_bps,
        **(strategy_params or {}),
    )  # fmt: skip
    metadata = getattr(predictor, "metadata", {}) or {}
    symbol = metadata.get("symbol", "BTCUSDT")
    index = pd.DatetimeIndex(candles.index)
    interval = pd.Timedelta(index[1] - index[0]) if len(index) > 1 else pd.Timedelta(hours=1)
    history = int(getattr(strategy_predictor, "required_history", 1)) + 1
    with tempfile.TemporaryDirectory(prefix="paper-journal-") as scratch:
        folder = Path(journal_dir) if journal_dir is not None else Path(scratch)
        journal = Journal(journal_path(folder, symbol=symbol, mode="paper"))
        if journal.state.records:
            journal.close()
            raise ValueError(
                f"journal {journal.path} already holds a run: a paper replay starts from an "
                "empty journal (pass a new journal_dir)"
            )
        engine = TradingEngine(
            strategy=strategy_obj,
            predictor=strategy_predictor,
            broker=PaperBroker(fee_bps=fee_bps, slippage_bps=slippage_bps),
            journal=journal,
            risk=RiskManager(risk_limits or RiskLimits()),
            status=StatusReporter(Path(status_file) if status_file else None, mode="paper"),
            symbol=symbol,
            interval=interval,
            history_size=history,
            initial_cash=initial_cash,
            sentiment=sentiment,
            fee_bps=fee_bps,
            slippage_bps=slippage_bps,
            execute_on_close=execute_on_close,
        )
        positions: list[float] = []
        feed = ReplayFeed(candles_from_frame(candles), interval=interval, trade_from=trade_from)
        for item in feed:
            assert item.candle is not None
            engine.on_candle(item.candle, tradable=item.tradable)
            positions.append(engine.quantity)
        journal.close()
    kept = journal.path if journal_dir is not None else None
    return _result(engine, candles, positions, predictor, initial_cash, kept)


def _check_replay_input(candles: pd.DataFrame) -> None:
    if not isinstance(candles, pd.DataFrame) or candles.empty:
        raise ValueError("run_paper_replay: candles must be a non-empty DataFrame")
    index = candles.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValueError("run_paper_replay: candles need a UTC DatetimeIndex (open_time)")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise ValueError("run_paper_replay: candle open times must be sorted and unique")


def _result(
    engine: TradingEngine,
    candles: pd.DataFrame,
    positions: list[float],
    predictor: Any,
    initial_cash: float,
    journal: Path | None,
) -> PaperRunResult:
    from engine.backtest.metrics import compute_metrics

    index = pd.DatetimeIndex(candles.index)
    # A bar the engine refused (bad data) has no mark of its own: it keeps the previous one.
    marks = pd.Series(dict(engine.equity_curve), dtype=np.float64)
    equity = marks.reindex(index).ffill().fillna(initial_cash).rename("equity")
    position = pd.Series(positions, index=index, name="position", dtype=np.float64)
    fills = _fills_frame(engine.trades)
    trades = round_trips(fills, index, float(candles["close"].iloc[-1]))
    # Equity before an entry from flat is the previous close's equity (cash only).
    before = equity.shift(1).fillna(initial_cash)
    trades["entry_equity"] = before.reindex(trades["entry_time"]).to_numpy(dtype=np.float64)
    trades["return"] = trades["pnl"] / trades["entry_equity"]
    metrics = compute_metrics(equity, trades, position, initial_cash)
    return PaperRunResult(
        fills=fills,
        trades=trades,
        equity=equity,
        position=position,
        metrics=metrics,
        model_name=getattr(predictor, "name", None),
        model_version=getattr(predictor, "version", None),
        model_sha256=getattr(predictor, "sha256", None),
        journal=journal,
    )
