"""train_model --search N: N Optuna trials on the training and model-selection splits.

Each trial is a whole training run (same data, same splits, same purge) with other
hyper-parameters, into its own folder of a private work folder. The selection metric is the
trial's loss on the model-selection ("validation") split; the test split and everything after
it play no part. The best trial's artifacts are published as the version, with
``metadata["search"]`` recording every trial (the contract the registry reads to count trials
for the deflated Sharpe ratio) and a PNG of the trials beside the training plot.

A trial that raises is recorded failed with its error, and the search goes on. Nothing is
published until the search ends: a killed worker leaves nothing half-written.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import pandas as pd

from engine.inference import artifact_names
from engine.training.config import EpochCallback, TrainingConfig, TrainingError
from engine.training.metadata import write_json_atomic
from engine.training.publish import StagingDir
from engine.training.train import TrainingResult, train_model

log = logging.getLogger(__name__)
SELECTION_METRIC = "validation_loss"
DIRECTION: Final = "minimize"  # Final: optuna takes only its literal names
# on_trial(number, n_trials, trial_record): after each trial, numbered from 0.
TrialCallback = Callable[[int, int, dict[str, Any]], None]


def suggest(trial: Any, base: TrainingConfig) -> TrainingConfig:
    """The searched space: capacity, regularisation and step size; the target stays fixed."""
    return replace(
        base,
        learning_rate=trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        units=trial.suggest_categorical("units", [8, 16, 32, 64]),
        dropout=trial.suggest_float("dropout", 0.0, 0.4),
    )


def search_and_train(
    candles: pd.DataFrame,
    sentiment: pd.Series | None,
    config: TrainingConfig,
    output_dir: Path | str,
    n_trials: int,
    *,
    on_epoch: EpochCallback | None = None,
    on_trial: TrialCallback | None = None,
    data_content_hash: str | None = None,
    suggest_config: Callable[[Any, TrainingConfig], TrainingConfig] = suggest,
) -> TrainingResult:
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise TrainingError(f"--search must be a positive number of trials, got {n_trials!r}")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=config.seed)
    study = optuna.create_study(direction=DIRECTION, sampler=sampler)
    work = Path(tempfile.mkdtemp(prefix="tradebot-search-"))
    records: list[dict[str, Any]] = []
    results: dict[int, TrainingResult] = {}
    try:
        for _ in range(n_trials):
            trial = study.ask()
            record: dict[str, Any] = {"number": trial.number, "params": {}, "value": None}
            try:
                trial_config = suggest_config(trial, config)
                record["params"] = dict(trial.params)
                result = train_model(
                    candles,
                    sentiment,
                    trial_config,
                    work / f"trial_{trial.number}",
                    on_epoch,
                    data_content_hash=data_content_hash,
                )
                value = _selection_loss(result)
            except Exception as exc:  # one bad trial must not end the search
                log.warning("trial %s failed: %s", trial.number, exc)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                record.update(params=dict(trial.params), state="failed", error=str(exc))
            else:
                study.tell(trial, value)
                results[trial.number] = result
                record.update(value=value, state="complete", error="")
            records.append(record)
            if on_trial is not None:
                on_trial(trial.number, n_trials, record)
        if not results:
            errors = "; ".join(f"trial {r['number']}: {r['error']}" for r in records)
            raise TrainingError(f"every one of the {n_trials} search trials failed: {errors}")
        best = min(results, key=lambda n: _selection_loss(results[n]))
        return _publish_best(results[best], records, best, n_trials, Path(output_dir))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _selection_loss(result: TrainingResult) -> float:
    """The validation loss the search minimises; a trial without a finite one failed."""
    loss = result.metrics["validation"]["loss"]
    if loss is None or not math.isfinite(loss):
        raise TrainingError(f"selection loss is not finite ({loss})")
    return float(loss)


def _publish_best(
    best: TrainingResult,
    records: list[dict[str, Any]],
    best_number: int,
    n_trials: int,
    output_dir: Path,
) -> TrainingResult:
    from engine.training.plot import write_trials_plot

    names = artifact_names(best.metadata["symbol"], best.metadata["kind"])
    trials_plot = f"{names.name}_trials.png"
    metadata = dict(best.metadata)
    metadata["search"] = {
        "n_trials": n_trials,
        "selection_metric": SELECTION_METRIC,
        "direction": DIRECTION,
        "best_trial": best_number,
        "trials": records,
        "plot": trials_plot,
    }
    with StagingDir(output_dir) as staging:
        for name in (names.plot, names.onnx):
            shutil.copyfile(best.output_dir / name, staging.path / name)
        write_trials_plot(staging.path / trials_plot, records, best_number, SELECTION_METRIC)
        write_json_atomic(staging.path / names.metadata, metadata)
        staging.publish([trials_plot, names.plot, names.onnx, names.metadata])
    out = output_dir.resolve()
    return replace(
        best,
        output_dir=out,
        onnx_path=out / names.onnx,
        metadata_path=out / names.metadata,
        plot_path=out / names.plot,
        metadata=metadata,
    )
