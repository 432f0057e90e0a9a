"""The one feature computation used by training, backtesting and live trading."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.features.kernels import (
    CandleArrays,
    FeatureError,
    feature_matrix,
    feature_params_from_metadata,
    normalize_matrix,
    required_history,
    sliding_windows,
)
from engine.features.params import FeatureParams


def check_candles(candles: pd.DataFrame) -> None:
    """Refuse a frame that does not follow the candle layout of docs/interfaces.md."""
    CandleArrays.from_frame(candles)


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
    matrix = feature_matrix(CandleArrays.from_frame(candles), sentiment, params)
    return pd.DataFrame(matrix, index=candles.index, columns=params.feature_names)


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
    matrix = normalize_matrix(features.to_numpy(dtype="float64"), names, normalization)
    return pd.DataFrame(matrix, index=features.index, columns=names)


@dataclass(frozen=True)
class ModelInputs:
    """Windows for the bars whose whole window has features, and those bars' timestamps.

    `windows[k]` is the model input for the decision taken at the close of `index[k]`.
    """

    windows: np.ndarray
    index: pd.DatetimeIndex


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


def latest_model_input(
    candles: pd.DataFrame, sentiment: pd.Series | None, metadata: Mapping[str, Any]
) -> np.ndarray:
    """float32 [1, window, n_features]: the input for the decision at the last bar's close.

    The live path: the same numbers as `model_inputs(...).windows[-1]`, computed for the
    last `window` rows only (give it `required_history(metadata)` bars or more).
    """
    params = feature_params_from_metadata(metadata)
    window = int(metadata["window"])
    raw = feature_matrix(
        CandleArrays.from_frame(candles),
        sentiment if params.use_sentiment else None,
        params,
        last=window,
    )
    matrix = normalize_matrix(raw, params.feature_names, metadata["normalization"])
    matrix = matrix.astype("float32")
    if len(matrix) < window or not np.isfinite(matrix).all():
        raise FeatureError(
            f"no complete feature window ends at the last bar {candles.index[-1]} "
            f"(needs {required_history(metadata)} bars without missing values, got "
            f"{len(candles)})"
        )
    return matrix[np.newaxis]


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
