from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.features import (
    FeatureError,
    FeatureParams,
    check_candles,
    check_no_gaps,
    compute_features,
    find_gaps,
    fit_normalization,
    model_inputs,
    normalize,
    required_history,
    sentiment_for_candles,
    sliding_windows,
)
from tests.engine.features.csv_frames import contiguous_slice, load_candles, load_sentiment

SMALL = FeatureParams(
    return_horizons=(1, 4), volatility_windows=(6,), range_window=4, volume_window=4, trend_window=5
)


@pytest.fixture(scope="module")
def candles(shared_data_dir: Path) -> pd.DataFrame:
    return contiguous_slice(load_candles(shared_data_dir), 300, "2024-03-01")


@pytest.fixture(scope="module")
def sentiment(shared_data_dir: Path) -> pd.Series:
    return load_sentiment(shared_data_dir)


def test_feature_columns_follow_params_and_sentiment_comes_last(candles, sentiment):
    params = FeatureParams(use_sentiment=True)
    features = compute_features(candles, sentiment, params)
    assert list(features.columns) == params.feature_names
    assert features.columns[-1] == "fear_greed"
    assert "fear_greed" not in FeatureParams().feature_names


def test_warm_up_is_exactly_the_lookback(candles):
    features = compute_features(candles, None, SMALL)
    complete = features.notna().all(axis=1).to_numpy()
    assert not complete[: SMALL.lookback].any()
    assert complete[SMALL.lookback :].all()


def test_features_of_a_bar_read_only_that_bar_and_earlier_ones(candles):
    full = compute_features(candles, None, SMALL)
    cut = 150
    changed = candles.copy()
    changed.iloc[cut + 1 :, :] *= 3.0  # a wildly different future
    again = compute_features(changed, None, SMALL)
    pd.testing.assert_frame_equal(full.iloc[: cut + 1], again.iloc[: cut + 1])
    assert not np.allclose(full.iloc[cut + 1 :].to_numpy(), again.iloc[cut + 1 :].to_numpy())


def test_log_return_and_range_have_their_definitions(candles):
    features = compute_features(candles, None, SMALL)
    row = 100
    close = candles["close"].to_numpy()
    assert features["log_return_4"].iloc[row] == pytest.approx(np.log(close[row] / close[row - 4]))
    assert features["range"].iloc[row] == pytest.approx(
        np.log(candles["high"].iloc[row] / candles["low"].iloc[row])
    )


def test_a_days_sentiment_is_seen_only_after_the_day_has_ended():
    index = pd.date_range("2024-01-01", periods=24 * 4, freq="1h", tz="UTC", name="open_time")
    candles = pd.DataFrame(
        {"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}, index=index
    )
    days = pd.date_range("2023-12-31", periods=6, freq="1D", tz="UTC", name="date")
    # Distinct value per day, so each joined value names its day.
    sentiment = pd.Series(np.arange(10.0, 16.0), index=days, name="fear_greed")
    joined = sentiment_for_candles(candles, sentiment)
    day_of_value = {10.0 + i: day for i, day in enumerate(days)}
    for open_time, value in joined.items():
        assert not np.isnan(value)
        day = day_of_value[value]
        assert day + pd.Timedelta(days=1) <= open_time + pd.Timedelta(hours=1)
    # Two hours into 2024-01-02 the value of 2024-01-01 is known.
    assert joined[pd.Timestamp("2024-01-02 02:00", tz="UTC")] == 11.0
    # During 2024-01-01 its own value is not.
    assert joined[pd.Timestamp("2024-01-01 12:00", tz="UTC")] == 10.0


def test_sentiment_feature_is_the_index_scaled_to_a_share(candles, sentiment):
    features = compute_features(candles, sentiment, FeatureParams(use_sentiment=True))
    values = features["fear_greed"].dropna()
    assert len(values) == len(candles)
    assert values.between(0, 1).all()


def test_sentiment_features_without_sentiment_are_refused(candles):
    with pytest.raises(FeatureError, match="uses sentiment"):
        compute_features(candles, None, FeatureParams(use_sentiment=True))


def test_normalisation_uses_the_fitted_parameters_not_the_data_it_is_applied_to(candles):
    features = compute_features(candles, None, SMALL).dropna()
    first, second = features.iloc[:100], features.iloc[100:]
    params = fit_normalization(first)
    fitted = normalize(first, params)
    assert np.allclose(fitted.mean(), 0, atol=1e-9)
    assert np.allclose(fitted.std(ddof=0), 1, atol=1e-9)
    applied = normalize(second, params)
    expected = (second["range"] - params["mean"]["range"]) / params["std"]["range"]
    pd.testing.assert_series_equal(applied["range"], expected)


def test_normalisation_refuses_rows_with_missing_values(candles):
    with pytest.raises(FeatureError, match="missing"):
        fit_normalization(compute_features(candles, None, SMALL))


def test_sliding_windows_end_at_their_row():
    matrix = np.arange(20, dtype="float32").reshape(10, 2)
    windows = sliding_windows(matrix, 3)
    assert windows.shape == (8, 3, 2)
    assert (windows[0] == matrix[0:3]).all()
    assert (windows[-1] == matrix[7:10]).all()


def test_model_inputs_cover_every_bar_after_the_warm_up(candles):
    features = compute_features(candles, None, SMALL).dropna()
    metadata = {
        "feature_params": SMALL.to_dict(),
        "feature_names": SMALL.feature_names,
        "normalization": fit_normalization(features),
        "window": 5,
    }
    inputs = model_inputs(candles, None, metadata)
    assert required_history(metadata) == SMALL.lookback + 5
    assert inputs.windows.dtype == np.float32
    assert inputs.windows.shape == (len(candles) - SMALL.lookback - 4, 5, len(SMALL.feature_names))
    assert inputs.index[0] == candles.index[SMALL.lookback + 4]
    assert inputs.index[-1] == candles.index[-1]


def test_metadata_whose_feature_names_this_code_does_not_compute_is_refused(candles):
    metadata = {
        "feature_params": SMALL.to_dict(),
        "feature_names": [*SMALL.feature_names[1:], SMALL.feature_names[0]],
        "normalization": {},
        "window": 5,
    }
    with pytest.raises(FeatureError, match="feature_names"):
        model_inputs(candles, None, metadata)


def test_feature_params_round_trip_and_refuse_unknown_keys():
    assert FeatureParams.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError, match="unknown keys"):
        FeatureParams.from_dict({**SMALL.to_dict(), "rsi_window": 14})
    with pytest.raises(ValueError, match="return_horizons"):
        FeatureParams(return_horizons=(0,))


def test_bad_candle_frames_are_refused_with_the_problem_named(candles):
    naive = candles.copy()
    naive.index = naive.index.tz_localize(None)
    with pytest.raises(FeatureError, match="UTC DatetimeIndex"):
        check_candles(naive)
    with pytest.raises(FeatureError, match=r"\['volume'\]"):
        check_candles(candles.drop(columns="volume"))
    broken = candles.copy()
    broken.iloc[7, broken.columns.get_loc("close")] = 0.0
    with pytest.raises(FeatureError, match=re.escape(str(candles.index[7]))):
        check_candles(broken)
    with pytest.raises(FeatureError, match="sorted"):
        check_candles(candles.iloc[::-1])


def test_gaps_are_found_and_refused(candles):
    holed = candles.drop(candles.index[[50, 51, 120]])
    gaps = find_gaps(holed.index, pd.Timedelta("1h"))
    assert gaps == [(candles.index[49], 2), (candles.index[119], 1)]
    with pytest.raises(FeatureError, match="2 unrepaired gap"):
        check_no_gaps(holed, pd.Timedelta("1h"))
    check_no_gaps(candles, pd.Timedelta("1h"))  # a continuous series passes
