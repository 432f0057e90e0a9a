"""The pandas-free decider (engine.live.decider) decides exactly as the frame path does.

The same engine runs the same candles twice, once deciding through the decider and once
through `strategy.targets(frame)`: every journal record that says what it decided and did
(decisions with their predictions, orders, fills) is identical. The candles include a
warm-up that is never traded, bars left undecided while the history is short, a gap (no
decision until the history is whole again) and a minimum holding period, the places where a
per-bar state could drift from the state the frame path rebuilds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from engine.inference import OnnxPredictor
from engine.live.brokers import PaperBroker
from engine.live.candles import candles_from_frame
from engine.live.config import RiskLimits
from engine.live.decider import LiveDecider
from engine.live.journal import Journal, read_journal
from engine.live.risk import RiskManager
from engine.live.runner import TradingEngine
from engine.live.status import StatusReporter
from engine.live.strategy import build_strategy

COMPARED = ("decision", "order", "fill", "order_rejected")


def _run(
    folder: Path, model_dir: Path, candles: pd.DataFrame, sentiment: pd.Series, *,
    use_decider: bool, trade_from: pd.Timestamp, params: dict[str, Any],
) -> list[dict[str, Any]]:  # fmt: skip
    folder.mkdir()
    model = OnnxPredictor.from_dir(model_dir)
    strategy, predictor = build_strategy(
        "ml_basic", model=model, fee_bps=10.0, slippage_bps=5.0, **params
    )
    journal = Journal(folder / "btcusdt-paper.jsonl")
    engine = TradingEngine(
        strategy=strategy, predictor=predictor, broker=PaperBroker(fee_bps=10.0, slippage_bps=5.0),
        journal=journal, risk=RiskManager(RiskLimits()),
        status=StatusReporter(folder / "status.json", mode="paper"), symbol="BTCUSDT",
        interval=pd.Timedelta(hours=1), history_size=model.required_history + 1,
        initial_cash=10_000.0, sentiment=sentiment, use_decider=use_decider,
    )  # fmt: skip
    assert (engine.decider is not None) == use_decider
    for candle in candles_from_frame(candles):
        engine.on_candle(candle, tradable=candle.open_time >= trade_from)
    journal.close()
    records, _state = read_journal(folder / "btcusdt-paper.jsonl")
    return [
        {k: v for k, v in r.items() if k not in ("seq", "at", "sha")}
        for r in records
        if r["type"] in COMPARED
    ]


@pytest.mark.parametrize("min_hold", [0, 5])
def test_the_decider_journals_what_the_frame_path_journals(
    tmp_path: Path, model_dir: Path, all_candles: pd.DataFrame, sentiment: pd.Series,
    after_training: pd.Timestamp, min_hold: int,
) -> None:  # fmt: skip
    start = all_candles.index.get_loc(after_training)
    candles = all_candles.iloc[start - 150 : start + 250]
    # Levels around the model's typical prediction, so that it enters and leaves often.
    median = float(OnnxPredictor.from_dir(model_dir).predict(candles, sentiment).median())
    params = {"min_hold": min_hold, "entry": median - 0.003, "exit": median}
    # A gap of three bars in the traded part: both refuse to decide until it is out of history.
    candles = candles.drop(candles.index[300:303])
    trade_from = candles.index[120]

    with_decider = _run(
        tmp_path / "decider", model_dir, candles, sentiment,
        use_decider=True, trade_from=trade_from, params=params,
    )  # fmt: skip
    with_frames = _run(
        tmp_path / "frames", model_dir, candles, sentiment,
        use_decider=False, trade_from=trade_from, params=params,
    )  # fmt: skip

    assert with_decider == with_frames
    decisions = [r for r in with_decider if r["type"] == "decision"]
    assert len(decisions) > 150
    assert {r["target"] for r in decisions} == {0.0, 1.0}, "both states must be exercised"
    assert any(r["type"] == "fill" for r in with_decider)


def test_strategies_without_a_decider_keep_the_frame_path() -> None:
    class Custom:
        name = "custom"

    assert LiveDecider.for_strategy(Custom(), None, history_size=3, step_ns=1) is None
