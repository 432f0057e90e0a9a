"""The live engine's ring-buffered window (engine.features.live) is the batch path's window,
bit for bit, on every bar of the shipped history, for every feature set: the price set and
the sentiment set, with the default look-backs and with others, and several window lengths.

The class of defect: train/serve skew, where the features a live model sees differ from the
ones it was trained and validated on. Both paths call the same kernels; this proves that
the ring buffers hand those kernels the same numbers, bar after bar, across the gap in the
shipped file too (where both refuse to decide until the history is whole again).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.features import (
    FeatureError,
    FeatureParams,
    compute_features,
    fit_normalization,
    model_inputs,
)
from engine.features.live import LiveFeatureWindow
from tests.engine.features.csv_frames import load_candles, load_sentiment

HOUR_NS = 3600 * 10**9
OTHER_LOOKBACKS = {
    "return_horizons": (1, 2, 5, 48),
    "volatility_windows": (6, 30),
    "range_window": 5,
    "volume_window": 9,
    "trend_window": 36,
}


@pytest.fixture(scope="module")
def candles(shared_data_dir: Path) -> pd.DataFrame:
    return load_candles(shared_data_dir)


@pytest.fixture(scope="module")
def sentiment(shared_data_dir: Path) -> pd.Series:
    return load_sentiment(shared_data_dir)


def _segments(candles: pd.DataFrame) -> list[pd.DataFrame]:
    """The file's contiguous runs: the batch path refuses a frame with a gap."""
    breaks = [0, *(np.flatnonzero(np.diff(candles.index.asi8) != HOUR_NS) + 1), len(candles)]
    return [candles.iloc[a:b] for a, b in pairwise(breaks) if b > a]


@pytest.mark.parametrize("window", [24, 7])
@pytest.mark.parametrize("lookbacks", ["default", "other"])
@pytest.mark.parametrize("use_sentiment", [False, True], ids=["price", "sentiment"])
def test_the_live_window_is_the_batch_window_on_every_bar(
    candles: pd.DataFrame, sentiment: pd.Series, use_sentiment: bool, lookbacks: str, window: int
) -> None:
    params = FeatureParams(
        use_sentiment=use_sentiment, **(OTHER_LOOKBACKS if lookbacks == "other" else {})
    )
    fitted = compute_features(candles.iloc[:3000], sentiment, params).dropna()
    metadata = {
        "feature_params": params.to_dict(),
        "feature_names": params.feature_names,
        "normalization": fit_normalization(fitted),
        "window": window,
    }
    live = LiveFeatureWindow(metadata, step_ns=HOUR_NS)
    compared = refused = 0
    for segment in _segments(candles):
        batch = model_inputs(segment, sentiment, metadata)
        expected = dict(zip(batch.index.asi8, batch.windows, strict=True))
        for open_ns, row in zip(segment.index.asi8, segment.to_numpy(), strict=True):
            live.append(int(open_ns), tuple(row))
            want = expected.get(open_ns)
            try:
                got = live.latest(sentiment)
            except FeatureError:
                assert want is None, f"live refused a bar the batch path decides: {open_ns}"
                refused += 1
                continue
            assert want is not None, f"live decided a bar the batch path refuses: {open_ns}"
            assert got.dtype == np.float32 and got.shape == (1, *want.shape)
            assert np.array_equal(got[0], want), f"bar {pd.Timestamp(open_ns, tz='UTC')}"
            compared += 1
    assert compared == sum(
        len(model_inputs(s, sentiment, metadata).windows) for s in _segments(candles)
    )
    assert compared > 25_000 and refused > 0
