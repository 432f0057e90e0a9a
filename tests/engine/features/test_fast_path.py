"""The live path (`latest_model_input`: features of the last window's rows only) gives the
numbers the batch path (`compute_features`, `model_inputs`) gives, on real candles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.features import (
    CandleArrays,
    FeatureError,
    FeatureParams,
    compute_features,
    feature_matrix,
    fit_normalization,
    latest_model_input,
    model_inputs,
    required_history,
)
from tests.engine.features.csv_frames import contiguous_slice, load_candles, load_sentiment

WINDOW = 24


@pytest.fixture(scope="module")
def candles(shared_data_dir: Path) -> pd.DataFrame:
    return contiguous_slice(load_candles(shared_data_dir), 700, "2024-03-01")


@pytest.fixture(scope="module")
def sentiment(shared_data_dir: Path) -> pd.Series:
    return load_sentiment(shared_data_dir)


def _metadata(candles: pd.DataFrame, sentiment: pd.Series, params: FeatureParams) -> dict:
    features = compute_features(candles, sentiment, params).dropna()
    return {
        "feature_params": params.to_dict(),
        "feature_names": params.feature_names,
        "normalization": fit_normalization(features),
        "window": WINDOW,
    }


@pytest.mark.parametrize("use_sentiment", [False, True], ids=["price", "sentiment"])
def test_live_path_equals_the_batch_path_on_real_data(candles, sentiment, use_sentiment):
    params = FeatureParams(use_sentiment=use_sentiment)
    metadata = _metadata(candles, sentiment, params)
    history = required_history(metadata)
    batch_raw = compute_features(candles, sentiment, params).to_numpy()
    batch_windows = model_inputs(candles, sentiment, metadata)
    compared = 0
    for end in range(history, len(candles) + 1, 29):
        recent = candles.iloc[end - history : end]
        live_raw = feature_matrix(CandleArrays.from_frame(recent), sentiment, params, last=WINDOW)
        np.testing.assert_allclose(live_raw, batch_raw[end - WINDOW : end], rtol=0, atol=1e-9)
        live_input = latest_model_input(recent, sentiment, metadata)
        assert live_input.shape == (1, WINDOW, len(params.feature_names))
        assert live_input.dtype == np.float32
        batch_input = batch_windows.windows[batch_windows.index.get_loc(candles.index[end - 1])]
        np.testing.assert_allclose(live_input[0], batch_input, rtol=1e-6, atol=1e-6)
        compared += 1
    assert compared > 15


def test_batch_features_match_pandas_rolling_definitions(candles):
    params = FeatureParams()
    features = compute_features(candles, None, params)
    close, volume = candles["close"], np.log1p(candles["volume"])
    log_return = np.log(close).diff()
    expected = pd.DataFrame(
        {
            "volatility_72": log_return.rolling(72).std(),
            "volume_ratio_24": volume - volume.shift(1).rolling(24).mean(),
            "close_to_mean_72": np.log(close) - np.log(close.rolling(72).mean()),
        }
    )
    pd.testing.assert_frame_equal(
        features[expected.columns], expected, check_exact=False, rtol=0, atol=1e-12
    )


def test_live_path_refuses_a_window_with_a_missing_value(candles, sentiment):
    params = FeatureParams(use_sentiment=True)
    metadata = _metadata(candles, sentiment, params)
    recent = candles.iloc[-required_history(metadata) :]
    # Sentiment that stops 10 days before the last bar is too old to use (NaN), not repeated.
    stale = sentiment.loc[: recent.index[-1] - pd.Timedelta(days=10)]
    with pytest.raises(FeatureError, match="no complete feature window ends at the last bar"):
        latest_model_input(recent, stale, metadata)
    with pytest.raises(FeatureError, match="no complete feature window"):
        latest_model_input(recent.iloc[5:], sentiment, metadata)
