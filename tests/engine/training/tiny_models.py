"""One tiny trained model per kind, shared by the training and inference tests.

Cached at module level so that the session trains each kind once even though
two test packages ask for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from engine.features import FeatureParams
from engine.training import TrainingConfig, TrainingResult, train_model
from tests.engine.features.csv_frames import contiguous_slice, load_candles, load_sentiment
from tests.support.temp_folders import TempFolderFactory

TINY_ROWS = 600
TINY_START = "2024-01-01"
TINY_FEATURES = FeatureParams(
    return_horizons=(1, 3, 6),
    volatility_windows=(12,),
    range_window=6,
    volume_window=6,
    trend_window=12,
)


def tiny_config(**overrides: Any) -> TrainingConfig:
    options: dict[str, Any] = {
        "window": 8,
        # The shared tiny model regresses: its 2-epoch output varies enough to trade in the
        # paper/backtest comparisons; the classifier default has its own test.
        "objective": "regression",
        "horizon": 1,
        "epochs": 2,
        "batch_size": 64,
        "units": 8,
        "kernel_size": 3,
        "allow_short_history": True,
        "feature_params": TINY_FEATURES,
    }
    options.update(overrides)
    return TrainingConfig(**options)


@dataclass
class TinyModel:
    result: TrainingResult
    candles: pd.DataFrame
    sentiment: pd.Series
    config: TrainingConfig
    epochs_reported: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)

    @property
    def model_dir(self) -> Path:
        return self.result.output_dir


_TRAINED: dict[str, TinyModel] = {}


def tiny_candles(data_dir: Path) -> pd.DataFrame:
    return contiguous_slice(load_candles(data_dir), TINY_ROWS, TINY_START)


def trained_tiny_model(kind: str, data_dir: Path, factory: TempFolderFactory) -> TinyModel:
    if kind not in _TRAINED:
        candles, sentiment = tiny_candles(data_dir), load_sentiment(data_dir)
        config = tiny_config(force_price_only=(kind == "price"))
        reported: list[tuple[int, int, dict[str, float]]] = []
        result = train_model(
            candles,
            sentiment,
            config,
            factory.mktemp(f"tiny_{kind}") / "model",
            on_epoch=lambda epoch, total, logs: reported.append((epoch, total, logs)),
        )
        _TRAINED[kind] = TinyModel(result, candles, sentiment, config, reported)
    return _TRAINED[kind]
