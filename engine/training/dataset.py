"""From candles to chronological train/validation/test samples (no TensorFlow here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.features import (
    FeatureParams,
    compute_features,
    fit_normalization,
    normalize,
    sliding_windows,
    windows_for_rows,
)
from engine.training.config import TrainingConfig, TrainingError

SPLIT_NAMES = ("train", "validation", "test")
# Fewer samples than this in a split gives meaningless loss and accuracy figures.
MIN_SAMPLES_PER_SPLIT = 20
TARGET = "log_return"


@dataclass(frozen=True)
class SplitRange:
    """Row positions in the candle frame of a split's first and last decision bar."""

    first: int
    last: int

    @property
    def rows(self) -> int:
        return self.last - self.first + 1


@dataclass
class Dataset:
    raw_features: pd.DataFrame
    normalization: dict[str, dict[str, float]]
    splits: dict[str, SplitRange]
    windows: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    decision_index: dict[str, pd.DatetimeIndex]
    out_of_sample_position: int


def next_log_return(close: pd.Series, horizon: int) -> pd.Series:
    """The target at bar t: log(close[t + horizon] / close[t]); NaN at the last bars."""
    log_close = np.log(close.astype("float64"))
    return log_close.shift(-horizon) - log_close


def chronological_splits(first: int, last: int, config: TrainingConfig) -> dict[str, SplitRange]:
    """[train][purge][validation][purge][test] over decision-bar positions first..last."""
    total = last - first + 1
    n_val = int(total * config.validation_fraction)
    n_test = int(total * config.test_fraction)
    n_train = total - n_val - n_test - 2 * config.purge
    if min(n_train, n_val, n_test) < MIN_SAMPLES_PER_SPLIT:
        raise TrainingError(
            f"{total} usable bars are too few for window {config.window}, horizon "
            f"{config.horizon} and purge gaps of {config.purge} bars: the splits would hold "
            f"{n_train}/{n_val}/{n_test} samples, each needs at least {MIN_SAMPLES_PER_SPLIT}"
        )
    train = SplitRange(first, first + n_train - 1)
    validation = SplitRange(train.last + config.purge + 1, train.last + config.purge + n_val)
    test = SplitRange(validation.last + config.purge + 1, last)
    return {"train": train, "validation": validation, "test": test}


def build_dataset(
    candles: pd.DataFrame,
    sentiment: pd.Series | None,
    params: FeatureParams,
    config: TrainingConfig,
) -> Dataset:
    raw = compute_features(candles, sentiment if params.use_sentiment else None, params)
    target = next_log_return(candles["close"], config.horizon).to_numpy()
    complete = windows_for_rows(raw, config.window).index
    positions = candles.index.get_indexer(complete)
    positions = positions[np.isfinite(target[positions])]
    if len(positions) == 0:
        raise TrainingError("no bar has a complete feature window and a known target")
    first, last = int(positions[0]), int(positions[-1])
    if len(positions) != last - first + 1:
        raise TrainingError(
            f"features are missing inside the data ({last - first + 1 - len(positions)} bars "
            "between the first and last usable bar); repair the data first"
        )
    splits = chronological_splits(first, last, config)
    train = splits["train"]
    # Normalisation sees only the rows that training windows read.
    normalization = fit_normalization(raw.iloc[train.first - config.window + 1 : train.last + 1])
    matrix = normalize(raw, normalization).to_numpy(dtype="float32")
    all_windows = sliding_windows(matrix, config.window)
    windows, targets, index = {}, {}, {}
    for name, split in splits.items():
        rows = np.arange(split.first, split.last + 1)
        windows[name] = np.ascontiguousarray(all_windows[rows - config.window + 1])
        targets[name] = target[rows].astype("float32")
        index[name] = pd.DatetimeIndex(candles.index[rows])
    return Dataset(
        raw_features=raw,
        normalization=normalization,
        splits=splits,
        windows=windows,
        targets=targets,
        decision_index=index,
        out_of_sample_position=splits["validation"].last + config.horizon + 1,
    )


def split_boundaries(
    candles: pd.DataFrame, dataset: Dataset, config: TrainingConfig
) -> dict[str, dict[str, Any]]:
    """Per split: decision bars, the first bar its inputs read and the last its targets read."""
    index = candles.index
    lookback = config.feature_params.lookback
    out: dict[str, dict[str, Any]] = {}
    for name, split in dataset.splits.items():
        first_input = max(0, split.first - config.window + 1 - lookback)
        last_target = min(len(index) - 1, split.last + config.horizon)
        out[name] = {
            "first_decision_bar": index[split.first].isoformat(),
            "last_decision_bar": index[split.last].isoformat(),
            "first_input_bar": index[first_input].isoformat(),
            "last_target_bar": index[last_target].isoformat(),
            "rows": split.rows,
        }
    return out


def market_condition_label(move: float, threshold: float) -> str:
    """A window's move beyond +threshold is up, beyond -threshold down, else sideways."""
    return "up" if move > threshold else "down" if move < -threshold else "sideways"


def market_conditions(close: pd.Series, window_days: int, threshold: float) -> dict[str, Any]:
    """Share of up, down and sideways moves over consecutive whole windows of `window_days`."""
    span = pd.Timedelta(days=window_days)
    # The data reach the close of the last bar, one step after its open.
    step = pd.Timedelta(np.median(np.diff(close.index.asi8))) if len(close) > 1 else span
    start, end = close.index[0], close.index[-1] + step
    moves: list[float] = []
    while start + span <= end:
        part = close[(close.index >= start) & (close.index < start + span)]
        if len(part) >= 2:
            moves.append(float(part.iloc[-1] / part.iloc[0] - 1.0))
        start += span
    labels = [market_condition_label(m, threshold) for m in moves]
    count = len(labels)
    shares = {k: (labels.count(k) / count if count else 0.0) for k in ("up", "down", "sideways")}
    missing = [k for k, share in shares.items() if share == 0.0]
    return {
        "window_days": window_days,
        "threshold": threshold,
        "windows": count,
        "shares": shares,
        "moves": moves,
        "missing": missing,
    }
