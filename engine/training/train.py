"""train_model: candles (+ sentiment) in, ONNX + metadata + plot published out."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.data import content_hash
from engine.features import (
    FeatureError,
    check_candles,
    check_no_gaps,
    sentiment_for_candles,
)
from engine.inference import artifact_names, file_sha256
from engine.training.config import (
    EpochCallback,
    InsufficientHistoryError,
    TrainingConfig,
    TrainingError,
)
from engine.training.dataset import (
    SPLIT_NAMES,
    TARGET,
    Dataset,
    build_dataset,
    market_conditions,
    split_boundaries,
)
from engine.training.metadata import code_revision, hardware, library_versions, write_json_atomic
from engine.training.publish import StagingDir

log = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    output_dir: Path
    onnx_path: Path
    metadata_path: Path
    plot_path: Path
    metadata: dict[str, Any]
    metrics: dict[str, dict[str, float | None]]
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def kind(self) -> str:
        return self.metadata["kind"]

    @property
    def onnx_sha256(self) -> str:
        return self.metadata["onnx_sha256"]

    @property
    def paths(self) -> list[Path]:
        return [self.onnx_path, self.metadata_path, self.plot_path]


@dataclass(frozen=True)
class SentimentChoice:
    use: bool
    reason: str


def train_model(
    candles: pd.DataFrame,
    sentiment: pd.Series | None,
    config: TrainingConfig,
    output_dir: Path | str,
    on_epoch: EpochCallback | None = None,
    *,
    data_content_hash: str | None = None,
) -> TrainingResult:
    """Train, export, check parity and publish the three artifacts into `output_dir`.

    Raises TrainingError (InsufficientHistoryError for short data) with nothing
    published. `on_epoch(epoch, total, logs)` is called after each epoch; an
    exception it raises aborts the run the same way.
    """
    started_at, started = datetime.now(UTC), time.monotonic()
    warnings: list[str] = []
    _check_input(candles, config)
    history_days = _check_history(candles, config, warnings)
    choice = choose_sentiment(candles, sentiment, config)
    if not choice.use and not config.force_price_only:
        _warn(warnings, choice.reason)
    params = replace(config.feature_params, use_sentiment=choice.use)
    kind = "sentiment" if choice.use else "price"
    names = artifact_names(config.symbol, kind)
    dataset = build_dataset(candles, sentiment, params, config)
    conditions = _train_conditions(candles, dataset, config, warnings)

    from engine.training import export  # TensorFlow loads only now
    from engine.training import model as networks

    networks.seed_everything(config.seed)
    n_features = len(params.feature_names)
    train_targets = dataset.targets["train"]
    classify = config.objective == "classification"
    labels = {s: fit_labels(dataset.targets[s], config.objective) for s in SPLIT_NAMES}
    keras_model = networks.build_model(
        config, n_features, float(train_targets.mean()), float(train_targets.std() or 1.0)
    )
    history = networks.fit_model(
        keras_model,
        config,
        (dataset.windows["train"], labels["train"]),
        (dataset.windows["validation"], labels["validation"]),
        on_epoch,
    )
    _check_converged(history)
    calibration = None
    if classify:
        # Calibrated on the model-selection split (never the test split), inside the graph.
        logits = networks.predict(keras_model, dataset.windows["validation"])
        a, b = networks.platt_fit(logits, labels["validation"])
        keras_model = networks.calibrated(keras_model, a, b)
        calibration = {"method": "platt", "a": a, "b": b, "fitted_on": "validation"}
    predictions = {s: networks.predict(keras_model, dataset.windows[s]) for s in SPLIT_NAMES}
    metrics = {
        s: split_metrics(dataset.targets[s], predictions[s], config.objective) for s in SPLIT_NAMES
    }

    with StagingDir(output_dir) as staging:
        onnx_path = staging.path / names.onnx
        export.export_onnx(keras_model, config.window, n_features, onnx_path)
        golden_rows = golden_sample_rows(len(dataset.windows["test"]), config.golden_size)
        golden_inputs = dataset.windows["test"][golden_rows]
        test_onnx = export.onnx_outputs(onnx_path, dataset.windows["test"])
        parity = _parity(predictions["test"], test_onnx, golden_rows, config)
        from engine.training.plot import write_training_plot

        write_training_plot(
            staging.path / names.plot,
            f"{names.name}: {config.symbol} {config.interval}, window {config.window}, "
            f"test directional accuracy {_fmt(metrics['test']['directional_accuracy'])}",
            history,
            dataset.decision_index["test"],
            dataset.targets["test"],
            predictions["test"],
            conditions,
        )
        metadata = {
            "name": names.name,
            "version": None,
            "symbol": config.symbol,
            "interval": config.interval,
            "kind": kind,
            "uses_sentiment": choice.use,
            "sentiment_reason": choice.reason,
            "feature_names": params.feature_names,
            "feature_params": params.to_dict(),
            "window": config.window,
            "horizon": config.horizon,
            "objective": config.objective,
            "target": TARGET if not classify else f"{TARGET}_sign",
            "target_description": target_description(config),
            "calibration": calibration,
            "strategy": config.strategy_metadata(predictions["validation"]),
            "normalization": dataset.normalization,
            "onnx": export.io_shapes(config.window, n_features),
            "onnx_sha256": file_sha256(onnx_path),
            "golden": {
                "inputs": golden_inputs.tolist(),
                "outputs": test_onnx[golden_rows][:, None].tolist(),
                "tolerance": config.golden_tolerance,
                "source": "evenly spaced windows of the test split",
            },
            "parity": parity,
            "data": _data_lineage(candles, sentiment, choice, data_content_hash),
            "splits": split_boundaries(candles, dataset, config),
            "purge_bars": config.purge,
            "out_of_sample_from": _out_of_sample_from(candles, dataset, config),
            "allow_short_history": config.allow_short_history,
            "history_days": round(history_days, 3),
            "min_history_days": config.min_history_days,
            "market_conditions": conditions,
            "metrics": metrics,
            "training": {
                "epochs_requested": config.epochs,
                "epochs_run": len(history.get("loss", [])),
                "best_epoch": _best_epoch(history),
                "history": history,
                "config": config.to_dict(),
            },
            "seed": config.seed,
            "library_versions": library_versions(),
            "code": code_revision(),
            "hardware": hardware(networks.devices()),
            "started_at": started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "duration_seconds": round(time.monotonic() - started, 3),
            "warnings": warnings,
        }
        write_json_atomic(staging.path / names.metadata, metadata)
        staging.publish([names.plot, names.onnx, names.metadata])
    out = Path(output_dir).resolve()
    return TrainingResult(
        output_dir=out,
        onnx_path=out / names.onnx,
        metadata_path=out / names.metadata,
        plot_path=out / names.plot,
        metadata=metadata,
        metrics=metrics,
        warnings=warnings,
    )


def _warn(warnings: list[str], message: str) -> None:
    log.warning(message)
    warnings.append(message)


def _check_input(candles: pd.DataFrame, config: TrainingConfig) -> None:
    try:
        check_candles(candles)
        if len(candles) == 0:
            raise FeatureError(f"no candles for {config.symbol} {config.interval}")
        check_no_gaps(candles, config.step)
    except FeatureError as error:
        raise TrainingError(f"{config.symbol} {config.interval}: {error}") from error


def _check_history(candles: pd.DataFrame, config: TrainingConfig, warnings: list[str]) -> float:
    """The guide: train on six months or more. Shorter only as a recorded experiment."""
    start, end = candles.index[0], candles.index[-1] + config.step
    days = (end - start) / pd.Timedelta(days=1)
    if days >= config.min_history_days:
        return days
    message = (
        f"{config.symbol} {config.interval}: {len(candles)} candles cover {days:.1f} days "
        f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC); training needs at least "
        f"{config.min_history_days} days (six months)"
    )
    if not config.allow_short_history:
        raise InsufficientHistoryError(
            f"{message}. Load more history, or allow short history for an experiment "
            "(such a model can never pass a validation gate)."
        )
    _warn(warnings, f"{message}; trained anyway because allow_short_history is set")
    return days


def choose_sentiment(
    candles: pd.DataFrame, sentiment: pd.Series | None, config: TrainingConfig
) -> SentimentChoice:
    """Sentiment only when it covers every bar the features read; otherwise say why not."""
    if config.force_price_only:
        return SentimentChoice(False, "price-only model requested (force_price_only)")
    if sentiment is None or sentiment.dropna().empty:
        return SentimentChoice(False, "no Fear & Greed data available: fell back to price-only")
    joined = sentiment_for_candles(candles, sentiment)
    needed = joined.iloc[config.feature_params.lookback :]
    missing = needed.isna()
    if missing.any():
        first_missing = needed.index[missing.to_numpy()][0]
        values = sentiment.dropna()
        return SentimentChoice(
            False,
            f"Fear & Greed data ({values.index[0]:%Y-%m-%d} to {values.index[-1]:%Y-%m-%d}) "
            f"does not cover the training range ({needed.index[0]} to {needed.index[-1]}): "
            f"{int(missing.sum())} bars have no usable value, the first at {first_missing}; "
            "fell back to price-only",
        )
    return SentimentChoice(
        True, f"Fear & Greed covers every bar from {needed.index[0]} to {needed.index[-1]}"
    )


def _train_conditions(
    candles: pd.DataFrame, dataset: Dataset, config: TrainingConfig, warnings: list[str]
) -> dict[str, Any]:
    train = dataset.splits["train"]
    close = candles["close"].iloc[: train.last + config.horizon + 1]
    conditions = market_conditions(close, config.condition_window_days, config.condition_threshold)
    if conditions["windows"] == 0:
        _warn(
            warnings,
            f"training data is shorter than one {config.condition_window_days}-day window: "
            "market conditions unknown",
        )
    elif conditions["missing"]:
        _warn(
            warnings,
            f"training data has no {'/'.join(conditions['missing'])} "
            f"{config.condition_window_days}-day window: the model never saw such a market",
        )
    return conditions


def _check_converged(history: dict[str, list[float]]) -> None:
    losses = history.get("loss", []) + history.get("val_loss", [])
    if not losses or not all(math.isfinite(v) for v in losses):
        raise TrainingError(
            f"training diverged (losses {losses[-3:]}): lower the learning rate or check the data"
        )


def fit_labels(log_returns: np.ndarray, objective: str) -> np.ndarray:
    """What the network is fitted to: the horizon log return, or 1.0 when it is positive."""
    if objective == "classification":
        return (log_returns > 0).astype("float32")
    return log_returns


def target_description(config: TrainingConfig) -> str:
    move = f"log(close[t+{config.horizon}] / close[t])"
    if config.objective == "classification":
        return f"calibrated probability that {move} > 0, predicted at the close of bar t"
    return f"{move}, predicted at the close of bar t"


def split_metrics(
    actual: np.ndarray, predicted: np.ndarray, objective: str = "regression"
) -> dict[str, float | None]:
    """Loss in the objective's terms (MSE, or log loss), and direction against "always up"."""
    actual64, predicted64 = actual.astype("float64"), predicted.astype("float64")
    if objective == "classification":
        up = (actual64 > 0).astype("float64")
        p = np.clip(predicted64, 1e-7, 1 - 1e-7)
        log_loss = float(-np.mean(up * np.log(p) + (1 - up) * np.log(1 - p)))
        direction = _direction_metrics(actual64, predicted64 - 0.5)
        return {"loss": log_loss, "brier": float(np.mean((p - up) ** 2)), **direction}
    return {
        "loss": float(np.mean((predicted64 - actual64) ** 2)),
        **_direction_metrics(actual64, predicted64),
    }


def _direction_metrics(actual64: np.ndarray, predicted64: np.ndarray) -> dict[str, float | None]:
    moved = actual64 != 0
    accuracy = (
        float(np.mean(np.sign(predicted64[moved]) == np.sign(actual64[moved])))
        if moved.any()
        else None
    )
    return {
        "directional_accuracy": accuracy,
        # What "always up" would score: the bar a model has to clear.
        "up_share": float(np.mean(actual64[moved] > 0)) if moved.any() else None,
        "samples": len(actual64),
    }


def golden_sample_rows(n: int, size: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(size, n)).round().astype(int))


def _parity(
    keras_test: np.ndarray, onnx_test: np.ndarray, golden_rows: np.ndarray, config: TrainingConfig
) -> dict[str, Any]:
    diff = np.abs(keras_test.astype("float64") - onnx_test.astype("float64"))
    figure = float(diff.max()) if diff.size else 0.0
    golden = float(diff[golden_rows].max()) if golden_rows.size else 0.0
    if not figure <= config.parity_tolerance:
        raise TrainingError(
            f"ONNX Runtime and Keras disagree by {figure:.3g} on the test split "
            f"(tolerance {config.parity_tolerance:.3g}): the export is not trusted"
        )
    return {
        "max_abs_diff": figure,
        "golden_max_abs_diff": golden,
        "samples": int(diff.size),
        "golden_samples": int(golden_rows.size),
        "tolerance": config.parity_tolerance,
    }


def _data_lineage(
    candles: pd.DataFrame,
    sentiment: pd.Series | None,
    choice: SentimentChoice,
    content_hash: str | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "start": candles.index[0].isoformat(),
        "end": candles.index[-1].isoformat(),
        "rows": len(candles),
        "content_hash": content_hash or frame_hash(candles),
        "sentiment": None,
    }
    if choice.use and sentiment is not None:
        values = sentiment.dropna()
        data["sentiment"] = {
            "start": values.index[0].isoformat(),
            "end": values.index[-1].isoformat(),
            "rows": len(values),
            "content_hash": frame_hash(sentiment),
        }
    return data


def frame_hash(data: pd.DataFrame | pd.Series) -> str:
    """The data store's content hash, so lineage matches what the store reports."""
    return content_hash(data)


def _out_of_sample_from(candles: pd.DataFrame, dataset: Dataset, config: TrainingConfig) -> str:
    position = dataset.out_of_sample_position
    if position < len(candles):
        return candles.index[position].isoformat()
    return (candles.index[-1] + config.step).isoformat()


def _best_epoch(history: dict[str, list[float]]) -> int | None:
    losses = history.get("val_loss") or []
    return int(np.argmin(losses)) + 1 if losses else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"
