"""train_model --search: Optuna trials on the training and selection splits, all recorded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.training import TrainingError
from engine.training.search import search_and_train, suggest
from tests.engine.features.csv_frames import load_sentiment
from tests.engine.training.tiny_models import tiny_candles, tiny_config

pytestmark = pytest.mark.slow


def test_a_search_records_every_trial_keeps_the_best_and_survives_a_failing_one(
    shared_data_dir: Path, tmp_path: Path
):
    candles, sentiment = tiny_candles(shared_data_dir), load_sentiment(shared_data_dir)
    config = tiny_config(epochs=1, force_price_only=True)

    def space(trial, base):
        chosen = suggest(trial, base)
        if trial.number == 1:
            return replace(chosen, learning_rate=2.0)  # refused by TrainingConfig: a failed trial
        return chosen

    seen = []
    result = search_and_train(
        candles, sentiment, config, tmp_path / "model", 3,
        on_trial=lambda n, total, record: seen.append((n, total, record["state"])),
        suggest_config=space,
    )  # fmt: skip
    search = json.loads(result.metadata_path.read_text())["search"]
    assert set(search) == {
        "n_trials", "selection_metric", "direction", "best_trial", "trials", "plot"
    }  # fmt: skip
    assert (search["n_trials"], search["direction"]) == (3, "minimize")
    assert search["selection_metric"] == "validation_loss"
    assert [t["number"] for t in search["trials"]] == [0, 1, 2]
    failed = search["trials"][1]
    assert failed["state"] == "failed" and "learning_rate" in failed["error"]
    assert failed["value"] is None
    complete = [t for t in search["trials"] if t["state"] == "complete"]
    assert all(set(t) == {"number", "params", "value", "state", "error"} for t in search["trials"])
    best = min(complete, key=lambda t: t["value"])
    assert search["best_trial"] == best["number"]
    assert result.metadata["training"]["config"]["units"] == best["params"]["units"]
    assert result.metrics["validation"]["loss"] == pytest.approx(best["value"])
    assert (result.output_dir / search["plot"]).stat().st_size > 0
    assert seen == [(0, 3, "complete"), (1, 3, "failed"), (2, 3, "complete")]
    assert sorted(p.name for p in result.output_dir.iterdir()) == sorted(
        [result.onnx_path.name, result.metadata_path.name, result.plot_path.name, search["plot"]]
    )


def test_a_search_of_zero_trials_is_refused_naming_the_option(tmp_path: Path):
    with pytest.raises(TrainingError, match="--search must be a positive number of trials"):
        search_and_train(None, None, tiny_config(), tmp_path / "model", 0)
    assert not (tmp_path / "model").exists()
