"""The one feature computation used by training, backtesting and live trading."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.features.params import SENTIMENT_FEATURE, FeatureParams
from engine.features.sentiment import sentiment_for_candles

REQUIRED_COLUMNS = ("open", "high", "low", "close", "volume")
# Scale of the Fear & Greed index, so the raw feature is a share like the others.
SENTIMENT_SCALE = 100.0


class FeatureError(ValueError):
    """Input that features cannot be computed from; the message names the problem."""


def check_candles(candles: pd.DataFrame) -> None:
    """Refuse a frame that does not follow the candle layout of docs/interfaces.md."""
    if not isinstance(candles, pd.DataFrame):
        raise FeatureError(f"candles must be a pandas DataFrame, got {type(candles).__name__}")
    index = candles.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise FeatureError("candles must be indexed by a UTC DatetimeIndex (open_time)")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise FeatureError("candle index (open_time) must be sorted and unique")
    missing = [name for name in REQUIRED_COLUMNS if name not in candles.columns]
    if missing:
        raise FeatureError(f"candles lack column(s) {missing}")
    prices = candles[["open", "high", "low", "close"]]
    bad_rows = prices.isna().any(axis=1) | (prices <= 0).any(axis=1) | candles["volume"].isna()
    bad_rows |= candles["volume"] < 0
    if bad_rows.any():
        first = candles.index[bad_rows.to_numpy()][0]
        raise FeatureError(
            f"candles have {int(bad_rows.sum())} row(s) with missing, non-positive prices "
            f"or negative volume; first at {first}"
        )


def find_gaps(index: pd.DatetimeIndex, step: pd.Timedelta) -> list[tuple[pd.Timestamp, int]]:
    """(bar before the gap, number of missing bars) for each place where bars are missing."""
    if len(index) < 2:
        return []
    deltas = np.diff(index.asi8)
    step_ns = step.value
    where = np.flatnonzero(deltas != step_ns)
    return [(index[i], int(deltas[i] // step_ns) - 1) for i in where]


def check_no_gaps(candles: pd.DataFrame, step: pd.Timedelta) -> None:
    """Returns over N bars are only right on a continuous series, so a gap is refused."""
    gaps = find_gaps(pd.DatetimeIndex(candles.index), step)
    if gaps:
        shown = ", ".join(f"{missing} bar(s) missing after {at}" for at, missing in gaps[:3])
        more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
        raise FeatureError(
            f"candles have {len(gaps)} unrepaired gap(s): {shown}{more}; "
            "repair the series in the data store before computing features"
        )


def compute_features(
    candles: pd.DataFrame,
    sentiment: pd.Series | None = None,
    params: FeatureParams | None = None,
) -> pd.DataFrame:
    """Raw (not normalised) features, one row per candle, columns in `params.feature_names`.

    Rows whose look-back reaches before the first candle are NaN (warm-up).
    """
    params = params or FeatureParams()
    check_candles(candles)
    close = candles["close"].astype("float64")
    log_close = np.log(close)
    one_bar_return = log_close.diff()
    columns: dict[str, pd.Series] = {}
    for horizon in params.return_horizons:
        columns[f"log_return_{horizon}"] = log_close.diff(horizon)
    for window in params.volatility_windows:
        columns[f"volatility_{window}"] = one_bar_return.rolling(window).std()
    bar_range = np.log(candles["high"] / candles["low"])
    columns["range"] = bar_range
    columns[f"range_mean_{params.range_window}"] = bar_range.rolling(params.range_window).mean()
    # log1p keeps a zero-volume bar finite.
    log_volume = np.log1p(candles["volume"].astype("float64"))
    columns["volume_change"] = log_volume.diff()
    columns[f"volume_ratio_{params.volume_window}"] = (
        log_volume - log_volume.shift(1).rolling(params.volume_window).mean()
    )
    columns[f"close_to_mean_{params.trend_window}"] = log_close - np.log(
        close.rolling(params.trend_window).mean()
    )
    if params.use_sentiment:
        if sentiment is None:
            raise FeatureError("this feature set uses sentiment: pass the fear_greed series")
        columns[SENTIMENT_FEATURE] = sentiment_for_candles(candles, sentiment) / SENTIMENT_SCALE
    features = pd.DataFrame(columns, index=candles.index)
    return features[params.feature_names].astype("float64")


def fit_normalization(features: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean and standard deviation per feature, from the rows given (the training split)."""
    if features.isna().any().any():
        raise FeatureError("cannot fit normalisation on rows with missing feature values")
    mean = features.mean()
    std = features.std(ddof=0)
    # A constant feature would divide by zero; leaving it unscaled keeps it at 0.
    std = std.where(std > 1e-12, 1.0)
    return {
        "mean": {name: float(mean[name]) for name in features.columns},
        "std": {name: float(std[name]) for name in features.columns},
    }


def normalize(
    features: pd.DataFrame, normalization: Mapping[str, Mapping[str, float]]
) -> pd.DataFrame:
    names = list(features.columns)
    missing = [n for n in names if n not in normalization["mean"] or n not in normalization["std"]]
    if missing:
        raise FeatureError(f"normalisation has no mean/std for feature(s) {missing}")
    mean = np.array([normalization["mean"][n] for n in names], dtype="float64")
    std = np.array([normalization["std"][n] for n in names], dtype="float64")
    return (features - mean) / std


def sliding_windows(matrix: np.ndarray, window: int) -> np.ndarray:
    """[n_rows, n_features] -> [n_rows - window + 1, window, n_features] (a view, no copy).

    Window k holds rows k .. k + window - 1, so it ends at row k + window - 1.
    """
    if matrix.ndim != 2:
        raise FeatureError(f"feature matrix must be 2-D, got shape {matrix.shape}")
    if len(matrix) < window:
        return np.empty((0, window, matrix.shape[1]), dtype=matrix.dtype)
    return np.lib.stride_tricks.sliding_window_view(matrix, (window, matrix.shape[1]))[:, 0]


@dataclass(frozen=True)
class ModelInputs:
    """Windows for the bars whose whole window has features, and those bars' timestamps.

    `windows[k]` is the model input for the decision taken at the close of `index[k]`.
    """

    windows: np.ndarray
    index: pd.DatetimeIndex


def feature_params_from_metadata(metadata: Mapping[str, Any]) -> FeatureParams:
    params = FeatureParams.from_dict(dict(metadata["feature_params"]))
    if params.feature_names != list(metadata["feature_names"]):
        raise FeatureError(
            f"metadata feature_names {metadata['feature_names']} differ from what this code "
            f"computes for its feature_params ({params.feature_names})"
        )
    return params


def required_history(metadata: Mapping[str, Any]) -> int:
    """Bars of history needed for one prediction: the feature look-back plus one window."""
    return feature_params_from_metadata(metadata).lookback + int(metadata["window"])


def normalized_features(
    candles: pd.DataFrame, sentiment: pd.Series | None, metadata: Mapping[str, Any]
) -> pd.DataFrame:
    """The normalised feature rows a model with this metadata sees (NaN during warm-up)."""
    params = feature_params_from_metadata(metadata)
    raw = compute_features(candles, sentiment if params.use_sentiment else None, params)
    return normalize(raw, metadata["normalization"])


def model_inputs(
    candles: pd.DataFrame, sentiment: pd.Series | None, metadata: Mapping[str, Any]
) -> ModelInputs:
    """float32 windows [n, window, n_features] for every bar with a complete window."""
    window = int(metadata["window"])
    features = normalized_features(candles, sentiment, metadata)
    return windows_for_rows(features, window)


def windows_for_rows(features: pd.DataFrame, window: int) -> ModelInputs:
    matrix = features.to_numpy(dtype="float32")
    all_windows = sliding_windows(matrix, window)
    row_ok = np.isfinite(matrix).all(axis=1)
    # A window is usable when every one of its rows is.
    window_ok = sliding_windows(row_ok[:, None], window).all(axis=(1, 2))
    ends = np.flatnonzero(window_ok) + window - 1
    return ModelInputs(
        windows=np.ascontiguousarray(all_windows[window_ok]),
        index=pd.DatetimeIndex(features.index[ends]),
    )
