"""The look-ahead check against planted leaks, on windows of real candles (issue 12, part 4).

Each leak must be caught in every window tried, through `run_backtest` itself (the `lookahead`
gate fails and names the cut and the bar), and honest predictors must pass in all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from engine.backtest import run_backtest
from engine.strategies import MlBasic, Predictor, find_lookahead
from tests.engine.features.csv_frames import load_candles, load_sentiment
from tests.engine.strategies.fakes import (
    CentredRollingPredictor,
    FullSampleReturnZScorePredictor,
    LaterDaySentimentPredictor,
    MomentumPredictor,
    PeekingPredictor,
    PublishedSentimentMomentumPredictor,
)

WINDOW_DAYS = 30
HISTORY_DAYS = 5  # warm-up bars before the window, as run_backtest is given them
WINDOW_STARTS = {
    "BTCUSDT": ["2022-07-01", "2022-11-01", "2023-04-15", "2023-08-01", "2024-01-10",
                "2024-06-01", "2024-10-01", "2025-02-01"],
    "ETHUSDT": ["2022-09-01", "2023-06-01", "2024-03-01", "2024-12-01"],
}  # fmt: skip

LEAKS: dict[str, Callable[[], Predictor]] = {
    "next close": PeekingPredictor,
    "centred rolling window": CentredRollingPredictor,
    "full-sample normalisation": FullSampleReturnZScorePredictor,
    "sentiment before publication": LaterDaySentimentPredictor,
}
HONEST: dict[str, Callable[[], Predictor]] = {
    "last return": lambda: MomentumPredictor(warmup=5),
    "causal z-score and published sentiment": PublishedSentimentMomentumPredictor,
}


def _windows(shared_data_dir: Path) -> list[tuple[str, pd.DataFrame, pd.Timestamp]]:
    """(label, candles with warm-up history, window start): contiguous real hours only."""
    windows = []
    for symbol, starts in WINDOW_STARTS.items():
        candles = load_candles(shared_data_dir, symbol)
        for start in starts:
            first = pd.Timestamp(start, tz="UTC")
            frame = candles.loc[first - pd.Timedelta(days=HISTORY_DAYS) :].iloc[
                : 24 * (HISTORY_DAYS + WINDOW_DAYS)
            ]
            steps = frame.index.to_series().diff().dropna().unique()
            assert len(steps) == 1, f"{symbol} from {start} has a gap: pick another window"
            windows.append((f"{symbol} {start}", frame, first))
    return windows


@pytest.fixture(scope="module")
def real_windows(shared_data_dir: Path):
    return _windows(shared_data_dir), load_sentiment(shared_data_dir)


def _run(predictor, frame: pd.DataFrame, start: pd.Timestamp, sentiment: pd.Series):
    return run_backtest(
        "ml_basic", frame, sentiment=sentiment, predictor=predictor, start=start, gates={}
    )


@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_each_planted_leak_is_caught_in_every_window(real_windows, kind):
    windows, sentiment = real_windows
    caught = []
    for label, frame, start in windows:
        run = _run(LEAKS[kind](), frame, start, sentiment)
        gate = next(g for g in run.gate_results if g.name == "lookahead")
        if not gate.passed:
            assert "lookahead" in run.failed_gates and not run.passed
            assert run.lookahead["leak"] and run.lookahead["series"] == "predictions"
            cut, bar = pd.Timestamp(run.lookahead["cut"]), pd.Timestamp(run.lookahead["bar"])
            assert start <= cut and bar <= cut, "the bar that moved is at or before the cut"
            assert run.lookahead["cut"] in gate.detail and run.lookahead["bar"] in gate.detail
            caught.append(label)
    assert caught == [label for label, _, _ in windows], f"{kind}: missed in some windows"


@pytest.mark.parametrize("how", ["truncated", "perturbed"])
@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_each_way_of_changing_the_future_alone_catches_each_leak(real_windows, kind, how):
    """Either try alone catches every planted leak in every window: neither is decorative."""
    windows, sentiment = real_windows
    for label, frame, start in windows:
        finding = find_lookahead(
            MlBasic(LEAKS[kind]()),
            frame,
            sentiment,
            first_bar=frame.index.get_loc(start),
            variants=(how,),
        )
        assert finding.leak and finding.how == how and finding.series == "predictions", label


@pytest.mark.parametrize("kind", sorted(HONEST))
def test_honest_predictors_are_not_flagged_in_any_window(real_windows, kind):
    windows, sentiment = real_windows
    for label, frame, start in windows:
        run = _run(HONEST[kind](), frame, start, sentiment)
        assert run.lookahead == {**run.lookahead, "leak": False}, label
        assert run.lookahead["cuts"] >= 20
        assert "lookahead" not in run.failed_gates, label


def test_the_first_cut_that_moves_is_reported(real_windows):
    """The next-close leak moves the prediction of the cut bar itself, at the first cut."""
    windows, sentiment = real_windows
    _, frame, start = windows[0]
    first_bar = frame.index.get_loc(start)
    finding = find_lookahead(MlBasic(PeekingPredictor()), frame, sentiment, first_bar=first_bar)
    assert finding.leak and finding.cut == finding.bar == start.isoformat()
    assert finding.cuts == 20


def test_a_run_without_the_check_cannot_pass_and_is_exploratory(real_windows):
    windows, sentiment = real_windows
    _, frame, start = windows[0]
    run = run_backtest(
        "ml_basic",
        frame,
        sentiment=sentiment,
        predictor=MomentumPredictor(metadata={"out_of_sample_from": "2022-01-01T00:00:00Z"}),
        start=start,
        gates={},
        check_lookahead=False,
    )
    assert run.failed_gates == ["lookahead"] and not run.passed
    assert run.lookahead is None
    assert run.exploratory_reasons == ["the look-ahead check was skipped"]


@pytest.mark.slow
def test_the_real_tiny_onnx_model_is_not_flagged(shared_data_dir: Path, tmp_path_factory):
    from engine.backtest.runner import load_metadata
    from tests.support.tiny_world import tiny_full_model

    model_dir = tiny_full_model(shared_data_dir, tmp_path_factory)
    metadata = load_metadata(model_dir)
    first_unseen = pd.Timestamp(metadata["out_of_sample_from"])
    candles = load_candles(shared_data_dir)
    frame = candles.loc[first_unseen - pd.Timedelta(days=10) : first_unseen + pd.Timedelta(days=30)]
    run = run_backtest(
        "ml_basic",
        frame,
        sentiment=load_sentiment(shared_data_dir),
        model_dir=model_dir,
        start=first_unseen,
        gates={},
    )
    assert run.lookahead is not None, "the look-ahead check did not run"
    assert run.lookahead["leak"] is False and run.lookahead["cuts"] >= 20
    assert "lookahead" not in run.failed_gates
