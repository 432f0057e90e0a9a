"""engine.backtest.reproduction: comparing a file with a re-fit of its recorded procedure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backtest.reproduction import (
    CLOSE,
    CLOSE_AGREEMENT,
    CLOSE_CORRELATION,
    DIFFERS,
    PREDICTION_TOLERANCE,
    REPRODUCES,
    UNCHECKED,
    Reproduction,
    compare_to_refit,
)

BARS = pd.date_range("2024-03-01", periods=300, freq="1h", tz="UTC")


class FixedPredictor:
    """Predictions fixed in advance, one per bar; the strategy reads them by bar."""

    window = 1
    uses_sentiment = False
    required_history = 1
    metadata: dict[str, Any] = {"horizon": 1, "objective": "regression"}

    def __init__(self, values: np.ndarray) -> None:
        self.values = pd.Series(values, index=BARS, dtype="float64")

    def predict(self, candles: pd.DataFrame, sentiment: Any = None) -> pd.Series:
        return self.values.reindex(candles.index)

    def predict_latest(self, candles: pd.DataFrame, sentiment: Any = None) -> float:
        return float(self.values.loc[candles.index[-1]])


def candles() -> pd.DataFrame:
    close = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, len(BARS)))
    return pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0},
        index=BARS,
    )


def compare(ours: np.ndarray, theirs: np.ndarray) -> Reproduction:
    return compare_to_refit(
        FixedPredictor(ours),
        FixedPredictor(theirs),
        candles(),
        None,
        start=BARS[100],
        stop=BARS[-1] + pd.Timedelta(hours=1),
        strategy="ml_basic",
        fee_bps=10.0,
        slippage_bps=5.0,
    )


def signals(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.01, len(BARS))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), noise=st.floats(0, PREDICTION_TOLERANCE / 2))
def test_the_same_predictions_within_tolerance_reproduce(seed: int, noise: float) -> None:
    ours = signals(seed)
    found = compare(ours, ours + noise)
    assert found.status in (REPRODUCES, CLOSE)  # a position may flip at its threshold
    if found.agreement == 1.0:
        assert found.status == REPRODUCES and found.bars == 200
    assert found.max_difference is not None and found.max_difference <= noise + 1e-12


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shift=st.floats(PREDICTION_TOLERANCE * 2, 0.05),
    noise=st.floats(0, 0.01),
)
def test_predictions_apart_by_more_than_the_tolerance_never_reproduce(
    seed: int, shift: float, noise: float
) -> None:
    """Close when the predictions still correlate and the positions mostly agree (another
    machine's arithmetic); differs otherwise; never 'reproduces'."""
    ours = signals(seed)
    theirs = ours + np.random.default_rng(seed + 1).normal(0, noise, len(ours))
    theirs[150] = ours[150] + shift  # at least one bar apart by more than the tolerance
    found = compare(ours, theirs)
    assert found.status in (CLOSE, DIFFERS)
    assert found.correlation is not None and found.agreement is not None
    close = found.correlation >= CLOSE_CORRELATION and found.agreement >= CLOSE_AGREEMENT
    assert (found.status == CLOSE) is close
    assert found.warns is not close


def test_arithmetic_noise_is_close_and_does_not_warn() -> None:
    ours = signals(5)
    found = compare(ours, ours + np.random.default_rng(6).normal(0, 2e-4, len(ours)))
    assert found.status == CLOSE and not found.warns, found
    assert "to within arithmetic" in found.sentence()


def test_another_model_differs_and_says_how_much() -> None:
    found = compare(signals(1), signals(2))
    assert found.status == DIFFERS and found.agreement is not None and found.agreement < 1.0
    assert "does NOT reproduce" in found.sentence()
    assert f"{found.agreement:.0%} of 200 bars" in found.sentence()
    assert found.correlation is not None and found.correlation < CLOSE_CORRELATION


def test_the_record_round_trips_and_unknown_records_are_none() -> None:
    found = compare(signals(1), signals(1))
    assert found.status == REPRODUCES
    assert Reproduction.from_dict(found.to_dict()) == found
    assert Reproduction.from_dict({"status": "maybe"}) is None
    assert Reproduction.from_dict(None) is None
    unchecked = Reproduction.unchecked("the store changed")
    assert unchecked.status == UNCHECKED and unchecked.warns
    assert "was not checked (the store changed)" in unchecked.sentence()
    assert not found.warns


def test_no_bars_in_the_window_is_unchecked() -> None:
    found = compare_to_refit(
        FixedPredictor(signals(1)),
        FixedPredictor(signals(1)),
        candles(),
        None,
        start=BARS[-1] + pd.Timedelta(days=1),
        stop=BARS[-1] + pd.Timedelta(days=2),
        strategy="ml_basic",
        fee_bps=10.0,
        slippage_bps=5.0,
    )
    assert found.status == UNCHECKED and "no stored bars" in found.reason
