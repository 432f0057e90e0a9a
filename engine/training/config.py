"""Training options with defaults sized for three years of hourly candles on a small CPU."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.data import interval_timedelta
from engine.features import FeatureParams

# The guide: "Always train on sufficient historical data (6+ months)".
MIN_HISTORY_DAYS = 183
ARCHITECTURES = ("conv1d", "lstm")
OBJECTIVES = ("regression", "classification")
MAX_HORIZON = 24
# ml_basic's regression defaults, in the model's units: a margin over one round trip and an
# exit level for a predicted log return.
REGRESSION_LEVELS = {"entry": 0.0, "exit": 0.0}
# A classifier's default levels are quantiles of its own calibrated probabilities on the
# model-selection split: those probabilities sit within a point or two of the base rate
# (about 0.51), so a fixed level such as 0.52/0.48 either never enters or, once in, never
# leaves. Quantiles chosen by benchmarks/bench_walkforward.py (see the README).
DEFAULT_ENTRY_QUANTILE = 0.7
DEFAULT_EXIT_QUANTILE = 0.5
# Recorded so a benchmark (or a person) can read other quantile levels of the same model.
RECORDED_QUANTILES = tuple(round(0.05 * i, 2) for i in range(1, 20))

# on_epoch(epoch, total, logs): epoch counts from 1; logs holds loss and val_loss.
EpochCallback = Callable[[int, int, dict[str, float]], None]


class TrainingError(Exception):
    """Training refused or failed; the message says why. No artifacts were published."""


class InsufficientHistoryError(TrainingError):
    pass


@dataclass(frozen=True)
class TrainingConfig:
    symbol: str = "BTCUSDT"
    interval: str = "1h"
    window: int = 48
    # Bars ahead the target looks (1..24). 24 by benchmarks/bench_walkforward.py: of the
    # candidates that trade as a strategy (3+ trades in most windows), the classifier on the
    # 24-bar sign with quantile levels 0.70/0.50 compounded best after costs (see the README;
    # none beat buy-and-hold).
    horizon: int = 24
    # regression: the horizon log return (MSE); classification: its sign, probabilities
    # calibrated (Platt scaling on the model-selection split) inside the ONNX graph.
    # The regression's predictions never beat a round trip (0 trades in every window).
    objective: str = "classification"
    # ml_basic's parameters recorded in metadata["strategy"]; None: REGRESSION_LEVELS, or for
    # a classifier the quantiles below of its selection-split probabilities.
    entry: float | None = None
    exit: float | None = None
    min_hold: int = 0
    entry_quantile: float = DEFAULT_ENTRY_QUANTILE
    exit_quantile: float = DEFAULT_EXIT_QUANTILE
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    units: int = 32
    kernel_size: int = 5
    dropout: float = 0.1
    architecture: str = "conv1d"
    seed: int = 42
    patience: int = 4
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    # Bars left out between splits; None means window + horizon, the least that
    # keeps any window or target of one split from touching the next.
    purge_bars: int | None = None
    force_price_only: bool = False
    allow_short_history: bool = False
    min_history_days: int = MIN_HISTORY_DAYS
    feature_params: FeatureParams = field(default_factory=FeatureParams)
    condition_window_days: int = 30
    # A 30-day move beyond +/- this share is "up"/"down", else "sideways".
    condition_threshold: float = 0.05
    golden_size: int = 16
    parity_tolerance: float = 1e-4
    # Tolerance a host applies when re-running the golden sample (same ONNX file,
    # maybe another CPU): well below typical predictions (~1e-3).
    golden_tolerance: float = 1e-5

    def __post_init__(self) -> None:
        self._check_positive(
            "window", "horizon", "epochs", "batch_size", "units", "kernel_size", "golden_size"
        )
        self._check_positive("patience", "min_history_days", "condition_window_days")
        if self.horizon > MAX_HORIZON:
            raise ValueError(f"horizon must be 1 to {MAX_HORIZON} bars, got {self.horizon}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        self._check_strategy_levels()
        if not self.symbol or not self.symbol.isalnum():
            raise ValueError(f"symbol must be letters and digits like BTCUSDT, got {self.symbol!r}")
        interval_timedelta(self.interval)  # raises naming the supported intervals
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("validation_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {getattr(self, name)}")
        self._check_window_fits_the_kernels()
        if self.purge_bars is not None and self.purge_bars < self.window + self.horizon:
            raise ValueError(
                f"purge_bars must be at least window + horizon = {self.window + self.horizon}, "
                f"got {self.purge_bars}"
            )
        if not 0 < self.parity_tolerance <= 1e-4:
            raise ValueError(f"parity_tolerance must be in (0, 1e-4], got {self.parity_tolerance}")

    def _check_strategy_levels(self) -> None:
        for name in ("entry", "exit"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if isinstance(self.min_hold, bool) or not isinstance(self.min_hold, int):
            raise ValueError(f"min_hold must be a whole number of bars, got {self.min_hold!r}")
        if self.min_hold < 0:
            raise ValueError(f"min_hold must be >= 0 bars, got {self.min_hold}")
        for name in ("entry_quantile", "exit_quantile"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and 0 < value < 1):
                raise ValueError(f"{name} must be a finite number in (0, 1), got {value}")
        if self.exit_quantile > self.entry_quantile:
            raise ValueError(
                f"exit_quantile {self.exit_quantile} must not exceed entry_quantile "
                f"{self.entry_quantile}"
            )

    @property
    def strategy_units(self) -> str:
        return "probability" if self.objective == "classification" else "expected_return"

    def strategy_metadata(self, selection: np.ndarray | None = None) -> dict[str, Any]:
        """metadata["strategy"]: what backtest, paper and live trade this version with.

        ``selection``: the model's predictions on the model-selection split, which a
        classifier's default levels are quantiles of (never the test split or later bars).
        """
        section: dict[str, Any] = {"name": "ml_basic", "units": self.strategy_units}
        if self.objective == "regression":
            entry = REGRESSION_LEVELS["entry"] if self.entry is None else self.entry
            exit_ = REGRESSION_LEVELS["exit"] if self.exit is None else self.exit
        else:
            entry, exit_ = self._classifier_levels(selection, section)
        # A chosen entry below the quantile exit would be refused by ml_basic: exit never above.
        section["params"] = {
            "entry": float(entry),
            "exit": float(min(exit_, entry)),
            "min_hold": self.min_hold,
        }
        return section

    def _classifier_levels(
        self, selection: np.ndarray | None, section: dict[str, Any]
    ) -> tuple[float, float]:
        """Explicit levels, else quantiles of the selection split (recorded in ``section``)."""
        if self.entry is not None and self.exit is not None:
            return self.entry, self.exit
        quantiles = _selection_quantiles(selection)
        section["levels_from"] = {
            "split": "validation",
            "entry_quantile": self.entry_quantile,
            "exit_quantile": self.exit_quantile,
            "quantiles": quantiles,
        }
        finite = _finite(selection)
        entry = self.entry if self.entry is not None else np.quantile(finite, self.entry_quantile)
        exit_ = self.exit if self.exit is not None else np.quantile(finite, self.exit_quantile)
        return float(entry), float(exit_)

    def _check_window_fits_the_kernels(self) -> None:
        # Two unpadded convolutions shrink the window by 2 * (kernel - 1) bars; a shorter
        # window would fail deep inside Keras with a negative-dimension shape error.
        smallest = 2 * self.kernel_size - 1
        if self.architecture == "conv1d" and self.window < smallest:
            raise ValueError(
                f"window must be at least {smallest} bars for the conv1d model "
                f"(two convolutions of kernel_size {self.kernel_size}), got {self.window}; "
                "lengthen the window or shorten the kernel"
            )

    def _check_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def purge(self) -> int:
        return self.purge_bars if self.purge_bars is not None else self.window + self.horizon

    @property
    def step(self) -> pd.Timedelta:
        return interval_timedelta(self.interval)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["feature_params"] = self.feature_params.to_dict()
        return data


def _finite(selection: np.ndarray | None) -> np.ndarray:
    values = np.asarray([] if selection is None else selection, dtype="float64")
    return values[np.isfinite(values)]


def _selection_quantiles(selection: np.ndarray | None) -> dict[str, float]:
    values = _finite(selection)
    if not len(values):
        raise ValueError("a classifier's default entry/exit need its selection-split predictions")
    return {f"{q:.2f}": float(np.quantile(values, q)) for q in RECORDED_QUANTILES}
