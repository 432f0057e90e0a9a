"""ml_basic's whole-frame loop (over floats, states kept as lists) decides exactly what the
per-bar loop it replaced decided, on generated predictions: NaNs anywhere, any holding
period, any first decided bar; and a live frame after it resumes the same states."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.strategies.ml_basic import MlBasic


class Fixed:
    """A predictor that returns given values."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def predict(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        return pd.Series(self.values[: len(candles)], index=candles.index, name="prediction")


def reference_states(
    strategy: MlBasic, index: pd.DatetimeIndex, values: np.ndarray
) -> list[tuple[float, int]]:
    """(position, bars held) per bar, by the loop as it was before issue 29."""
    out, position, held = [], 0.0, 0
    for bar, prediction in zip(index, values, strict=True):
        if strategy.decide_from is not None and bar < strategy.decide_from:
            position, held = 0.0, 0
        else:
            position, held = strategy.step(prediction, position, held)
        out.append((position, held))
    return out


PREDICTIONS = st.lists(
    st.one_of(st.just(math.nan), st.floats(-0.01, 0.01, allow_nan=False)), min_size=2, max_size=80
)


@settings(max_examples=200, deadline=None)
@given(values=PREDICTIONS, min_hold=st.integers(0, 6), first=st.none() | st.integers(0, 90))
def test_the_whole_frame_loop_equals_the_per_bar_loop(values, min_hold, first) -> None:
    values = np.array(values)
    index = pd.date_range("2024-01-01", periods=len(values), freq="1h", tz="UTC")
    strategy = MlBasic(Fixed(values), entry=0.0, exit=-0.002, min_hold=min_hold)
    if first is not None:
        strategy.decide_from = index[0] + pd.Timedelta(hours=first)
    candles = pd.DataFrame({"close": np.ones(len(values))}, index=index)
    states = reference_states(strategy, index, values)
    assert strategy.targets(candles).tolist() == [position for position, _held in states]

    # A live frame after it (older predictions NaN) resumes the remembered state of the bar
    # before its newest one, as it did when the memory was a dict filled per bar.
    live = np.full(len(values), np.nan)
    live[-1] = 0.005
    strategy.predictor = Fixed(live)
    expected = strategy.step(0.005, *states[-2])[0]
    if strategy.decide_from is not None and index[-1] < strategy.decide_from:
        expected = 0.0
    assert strategy.targets(candles).iloc[-1] == expected
