"""A paper run over replayed bars makes the same trades as the backtester over the same bars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.backtest.simulator import SimulationConfig, simulate
from engine.inference import OnnxPredictor
from engine.live import run_paper_replay
from engine.strategies import get_strategy
from engine.strategies.ml_basic import round_trip_cost


@pytest.fixture
def replay_window(all_candles: pd.DataFrame, after_training: pd.Timestamp) -> pd.DataFrame:
    return all_candles.loc[after_training:].iloc[: 24 * 7]


def test_paper_replay_matches_the_backtester(model_dir: Path, replay_window, sentiment, tmp_path):
    predictor = OnnxPredictor.from_dir(model_dir)
    # A threshold at the median prediction makes the tiny model switch often: many trades.
    median = float(predictor.predict(replay_window, sentiment).median())
    threshold = median - round_trip_cost(10.0, 5.0)
    # The old every-bar rule (threshold, no exit level), compared on the raw output's scale.
    params = {"threshold": threshold, "units": "expected_return"}
    strategy = get_strategy("ml_basic", predictor=predictor, **params)
    backtest = simulate(
        replay_window, strategy.targets(replay_window, sentiment), SimulationConfig()
    )

    paper = run_paper_replay(
        model_dir, replay_window, sentiment,
        strategy="ml_basic", strategy_params=params, journal_dir=tmp_path / "j",
    )  # fmt: skip

    assert len(backtest.trades) >= 3, "the comparison needs trades to compare"
    assert list(paper.trades["entry_time"]) == list(backtest.trades["entry_time"])
    assert list(paper.trades["exit_time"]) == list(backtest.trades["exit_time"])
    assert list(paper.trades["exit_reason"]) == list(backtest.trades["exit_reason"])
    np.testing.assert_allclose(paper.trades["quantity"], backtest.trades["quantity"], rtol=1e-9)
    np.testing.assert_allclose(
        paper.trades["entry_price"], backtest.trades["entry_price"], rtol=1e-12
    )
    np.testing.assert_allclose(paper.trades["fees"], backtest.trades["fees"], rtol=1e-9)
    np.testing.assert_allclose(paper.equity, backtest.equity, rtol=1e-9)
    assert paper.metrics["n_trades"] == backtest.metrics["n_trades"]
    assert (
        paper.model_sha256
        == json.loads((model_dir / "btcusdt_sentiment_metadata.json").read_text())["onnx_sha256"]
    )
    # The journal holds one fill per executed order, each at a bar's open.
    fills = [
        json.loads(line)
        for line in paper.journal.read_text().splitlines()
        if '"type":"fill"' in line
    ]
    assert len(fills) == len(paper.fills)
    opens = replay_window["open"]
    for fill in fills:
        reference = opens.loc[pd.Timestamp(fill["candle"])]
        assert fill["price"] == pytest.approx(
            reference * (1 + (5e-4 if fill["side"] == "buy" else -5e-4))
        )


def test_paper_replay_refuses_bad_input(model_dir: Path, replay_window, sentiment, tmp_path):
    with pytest.raises(ValueError, match="sorted and unique"):
        run_paper_replay(model_dir, replay_window.iloc[::-1], sentiment)
    with pytest.raises(ValueError, match="non-empty"):
        run_paper_replay(model_dir, replay_window.iloc[:0], sentiment)
    run_paper_replay(model_dir, replay_window.iloc[:3], sentiment, journal_dir=tmp_path)
    with pytest.raises(ValueError, match="already holds a run"):
        run_paper_replay(model_dir, replay_window.iloc[:3], sentiment, journal_dir=tmp_path)


def test_hysteresis_parameters_from_the_metadata_trade_identically(
    model_dir: Path, replay_window, sentiment, tmp_path
):
    """Entry, exit and minimum hold recorded in the version: both sides read them from there."""
    metadata_path = model_dir / "btcusdt_sentiment_metadata.json"
    predictions = OnnxPredictor.from_dir(model_dir).predict(replay_window, sentiment).dropna()
    # Enter above the 60th percentile net of a round trip, exit below the 40th, hold 3 bars.
    entry = float(predictions.quantile(0.6)) - round_trip_cost(10.0, 5.0)
    exit_level = float(predictions.quantile(0.4))
    metadata = json.loads(metadata_path.read_text())
    metadata["strategy"] = {
        "name": "ml_basic",
        "units": "expected_return",
        "params": {"entry": entry, "exit": exit_level, "min_hold": 3},
    }
    metadata_path.write_text(json.dumps(metadata))
    predictor = OnnxPredictor.from_dir(model_dir)
    strategy = get_strategy("ml_basic", predictor=predictor)
    assert strategy.params.min_hold == 3 and strategy.params.exit == exit_level
    targets = strategy.targets(replay_window, sentiment)
    backtest = simulate(replay_window, targets, SimulationConfig())

    paper = run_paper_replay(
        model_dir, replay_window, sentiment, strategy="ml_basic", journal_dir=tmp_path / "j"
    )

    assert len(backtest.trades) >= 3, "the comparison needs trades to compare"
    # Hysteresis really held a position through bars a flat strategy would not enter on.
    held = (targets == 1.0) & (strategy.last_predictions <= strategy.entry_level)
    assert held.any()
    assert list(paper.trades["entry_time"]) == list(backtest.trades["entry_time"])
    assert list(paper.trades["exit_time"]) == list(backtest.trades["exit_time"])
    np.testing.assert_allclose(paper.equity, backtest.equity, rtol=1e-9)
