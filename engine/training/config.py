"""Training options with defaults sized for three years of hourly candles on a small CPU."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from engine.data import interval_timedelta
from engine.features import FeatureParams

# The guide: "Always train on sufficient historical data (6+ months)".
MIN_HISTORY_DAYS = 183
ARCHITECTURES = ("conv1d", "lstm")
OBJECTIVES = ("regression", "classification")
MAX_HORIZON = 24
# ml_basic's entry/exit defaults per objective, in the model's units: a margin over one round
# trip and an exit level for a predicted log return; probabilities for a classifier.
DEFAULT_STRATEGY_LEVELS = {
    "regression": {"entry": 0.0, "exit": 0.0},
    # From benchmarks/bench_walkforward.py: at 0.55 the small classifier rarely entered.
    "classification": {"entry": 0.52, "exit": 0.48},
}

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
    # Bars ahead the target looks (1..24); 4 is the starting point for measuring.
    horizon: int = 4
    # regression: the horizon log return (MSE); classification: its sign, probabilities
    # calibrated (Platt scaling on the model-selection split) inside the ONNX graph.
    # Default by the walk-forward benchmark: the regression's predictions never beat a round
    # trip (0 trades in every window); the calibrated classifier trades.
    objective: str = "classification"
    # ml_basic's parameters recorded in metadata["strategy"]; None: DEFAULT_STRATEGY_LEVELS.
    entry: float | None = None
    exit: float | None = None
    min_hold: int = 0
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

    @property
    def strategy_units(self) -> str:
        return "probability" if self.objective == "classification" else "expected_return"

    def strategy_metadata(self) -> dict[str, Any]:
        """metadata["strategy"]: what backtest, paper and live trade this version with."""
        levels = DEFAULT_STRATEGY_LEVELS[self.objective]
        params = {
            "entry": float(levels["entry"] if self.entry is None else self.entry),
            "exit": float(levels["exit"] if self.exit is None else self.exit),
            "min_hold": self.min_hold,
        }
        return {"name": "ml_basic", "units": self.strategy_units, "params": params}

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
