"""The feature kernels: numpy only, no pandas, so the live engine starts without it.

The one definition of every feature (`feature_matrix`) and of the model input's
normalisation. engine.features.pipeline applies them to candle frames (training,
backtesting); engine.features.live applies them to the engine's ring buffers. Both call
the same functions on the same numbers, so a bar's features are the same bits either way
(tests/features/test_live_features.py checks that on every bar of the shipped history).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.features.params import FeatureParams

if TYPE_CHECKING:
    import pandas as pd

REQUIRED_COLUMNS = ("open", "high", "low", "close", "volume")
# Scale of the Fear & Greed index, so the raw feature is a share like the others.
SENTIMENT_SCALE = 100.0


class FeatureError(ValueError):
    """Input that features cannot be computed from; the message names the problem."""


@dataclass(frozen=True)
class CandleArrays:
    """The candle columns features read, as float64 arrays, and open times in UTC nanoseconds.

    Features are computed over these, not over the frame, so the batch path (every bar) and
    the live path (the newest bars only) run the very same numpy code.
    """

    open_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def from_frame(cls, candles: pd.DataFrame) -> CandleArrays:
        """Checked arrays of a candle frame; FeatureError names what is wrong with it."""
        from engine.data.join import utc_ns

        _check_frame_layout(candles)
        arrays = cls(
            open_ns=utc_ns(candles.index),
            **{name: candles[name].to_numpy(dtype="float64") for name in REQUIRED_COLUMNS},
        )
        arrays.check_values(candles.index)
        return arrays

    def __len__(self) -> int:
        return len(self.close)

    def check_values(self, index: pd.Index) -> None:
        prices = np.stack([self.open, self.high, self.low, self.close])
        # NaN fails both `> 0` and `>= 0`, so missing values are caught too.
        bad_rows = ~(prices > 0).all(axis=0) | ~(self.volume >= 0)
        if bad_rows.any():
            first = index[np.flatnonzero(bad_rows)[0]]
            raise FeatureError(
                f"candles have {int(bad_rows.sum())} row(s) with missing, non-positive prices "
                f"or negative volume; first at {first}"
            )


def feature_matrix(
    candles: CandleArrays,
    sentiment: pd.Series | None,
    params: FeatureParams,
    last: int | None = None,
) -> np.ndarray:
    """Raw features [rows, n_features] of the last `last` candles (all of them when None).

    The one definition of every feature. A row reads its candle and earlier ones only, so
    the features of the last rows are the same whether or not the rows before them are
    computed too; rows whose look-back reaches before the first candle are NaN.
    """
    n = len(candles)
    first = 0 if last is None else max(n - last, 0)
    log_close = np.log(candles.close)
    one_bar_return = _lagged_difference(log_close, 1)
    columns: list[np.ndarray] = []
    for horizon in params.return_horizons:
        columns.append(_lagged_difference(log_close, horizon)[first:])
    for window in params.volatility_windows:
        columns.append(_rolling(one_bar_return, window, first, _sample_std))
    bar_range = np.log(candles.high / candles.low)
    columns.append(bar_range[first:])
    columns.append(_rolling(bar_range, params.range_window, first, _mean))
    # log1p keeps a zero-volume bar finite.
    log_volume = np.log1p(candles.volume)
    columns.append(_lagged_difference(log_volume, 1)[first:])
    previous_log_volume = _shifted(log_volume, 1)
    columns.append(
        log_volume[first:] - _rolling(previous_log_volume, params.volume_window, first, _mean)
    )
    columns.append(
        log_close[first:] - np.log(_rolling(candles.close, params.trend_window, first, _mean))
    )
    if params.use_sentiment:
        if sentiment is None:
            raise FeatureError("this feature set uses sentiment: pass the fear_greed series")
        from engine.data.join import close_times_ns, sentiment_at_closes  # pandas: sentiment only

        closes = close_times_ns(candles.open_ns)[first:]
        columns.append(sentiment_at_closes(closes, sentiment) / SENTIMENT_SCALE)
    if not columns[0].size:
        return np.empty((0, len(columns)), dtype="float64")
    return np.column_stack(columns)


def _shifted(values: np.ndarray, lag: int) -> np.ndarray:
    """values[i - lag] at i; NaN where that is before the first value."""
    out = np.full(len(values), np.nan)
    if lag < len(values):
        out[lag:] = values[: len(values) - lag]
    return out


def _lagged_difference(values: np.ndarray, lag: int) -> np.ndarray:
    return values - _shifted(values, lag)


def _mean(windows: np.ndarray) -> np.ndarray:
    return windows.mean(axis=1)


def _sample_std(windows: np.ndarray) -> np.ndarray:
    return windows.std(axis=1, ddof=1)


# Rows per rolling block: bounds the temporary copies of a years-long 1-minute series.
_ROLLING_BLOCK_ROWS = 65_536


def _rolling(
    values: np.ndarray,
    window: int,
    first: int,
    reduce: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """`reduce` over the `window` values ending at each row from `first` on.

    A window that reaches before the first value, or holds a NaN, gives NaN, as a pandas
    rolling window with min_periods=window would.
    """
    if first >= len(values):
        return np.empty(0)
    padded = np.concatenate([np.full(window - 1, np.nan), values])
    # Row i's window is padded[i : i + window]. as_strided, not sliding_window_view: the
    # same read-only view without the argument checks that cost more than a live row's math.
    step = padded.strides[0]
    windows = np.lib.stride_tricks.as_strided(
        padded[first:], shape=(len(values) - first, window), strides=(step, step), writeable=False
    )
    blocks = [
        reduce(windows[start : start + _ROLLING_BLOCK_ROWS])
        for start in range(0, len(windows), _ROLLING_BLOCK_ROWS)
    ]
    return np.concatenate(blocks) if blocks else np.empty(0)


def normalize_matrix(
    matrix: np.ndarray, names: list[str], normalization: Mapping[str, Mapping[str, float]]
) -> np.ndarray:
    """(feature - mean) / std per column, with the mean and std fitted on the training split."""
    missing = [n for n in names if n not in normalization["mean"] or n not in normalization["std"]]
    if missing:
        raise FeatureError(f"normalisation has no mean/std for feature(s) {missing}")
    mean = np.array([normalization["mean"][n] for n in names], dtype="float64")
    std = np.array([normalization["std"][n] for n in names], dtype="float64")
    return (matrix - mean) / std


def sliding_windows(matrix: np.ndarray, window: int) -> np.ndarray:
    """[n_rows, n_features] -> [n_rows - window + 1, window, n_features] (a view, no copy).

    Window k holds rows k .. k + window - 1, so it ends at row k + window - 1.
    """
    if matrix.ndim != 2:
        raise FeatureError(f"feature matrix must be 2-D, got shape {matrix.shape}")
    if len(matrix) < window:
        return np.empty((0, window, matrix.shape[1]), dtype=matrix.dtype)
    return np.lib.stride_tricks.sliding_window_view(matrix, (window, matrix.shape[1]))[:, 0]


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


def _check_frame_layout(candles: pd.DataFrame) -> None:
    """The candle layout of docs/interfaces.md; pandas is imported here, on the batch path only."""
    import pandas as pd

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
