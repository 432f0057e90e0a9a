"""Train a walk-forward fold's model with a version's own training configuration (#28).

The configuration is the one the version recorded (`metadata["training"]["config"]`); only
the data differs: the bars from the version's first training bar up to the fold's
`train_stop` (exclusive), so the fold's model never sees the fold it trades
(engine.backtest.walk_forward says how far before the fold that stops).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from engine.features import FeatureParams
from engine.training.config import TrainingConfig, TrainingError
from engine.training.train import TrainingResult, train_model


def config_from_metadata(metadata: Mapping[str, Any]) -> TrainingConfig:
    """The TrainingConfig a version was trained with; TrainingError when it is not recorded."""
    recorded = (metadata.get("training") or {}).get("config")
    if not isinstance(recorded, Mapping):
        raise TrainingError(
            f"{metadata.get('name') or 'the model'} does not record its training configuration "
            "(metadata training.config): its procedure cannot be re-fitted per fold"
        )
    values = dict(recorded)
    try:
        values["feature_params"] = FeatureParams.from_dict(dict(values.get("feature_params") or {}))
        return TrainingConfig(**values)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"the recorded training configuration is not usable: {exc}") from exc


def training_start(metadata: Mapping[str, Any]) -> pd.Timestamp | None:
    """The version's first training bar (its data lineage), or None when not recorded."""
    start = (metadata.get("data") or {}).get("start")
    return None if not start else pd.Timestamp(start)


def train_fold_model(
    candles: pd.DataFrame,
    sentiment: pd.Series | None,
    metadata: Mapping[str, Any],
    *,
    train_stop: pd.Timestamp,
    output_dir: Path,
    data_content_hash: str | None = None,
) -> TrainingResult:
    """Train the version's configuration on `candles` before `train_stop` into `output_dir`."""
    config = config_from_metadata(metadata)
    before = candles.loc[: train_stop - pd.Timedelta(microseconds=1)]
    start = training_start(metadata)
    if start is not None:
        before = before.loc[start:]
    if before.empty:
        raise TrainingError(f"no candles to train on before {train_stop.isoformat()}")
    return train_model(before, sentiment, config, output_dir, data_content_hash=data_content_hash)
