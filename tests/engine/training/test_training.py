from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.features import FeatureParams, compute_features, model_inputs
from engine.inference import REQUIRED_METADATA_KEYS, OnnxPredictor
from engine.strategies import get_strategy
from engine.training import (
    InsufficientHistoryError,
    TrainingConfig,
    TrainingError,
    set_metadata_version,
    train_model,
)
from engine.training.config import DEFAULT_ENTRY_QUANTILE, DEFAULT_EXIT_QUANTILE
from engine.training.dataset import market_conditions
from engine.training.train import choose_sentiment, golden_sample_rows
from tests.engine.features.csv_frames import load_sentiment
from tests.engine.training.tiny_models import TinyModel, tiny_candles, tiny_config

pytestmark = pytest.mark.slow

SENTIMENT_ARTIFACTS = [
    "BTCUSDT_sentiment_training.png",
    "btcusdt_sentiment.onnx",
    "btcusdt_sentiment_metadata.json",
]


def test_a_run_publishes_exactly_the_three_named_artifacts(tiny_model: TinyModel):
    model_dir = tiny_model.model_dir
    assert sorted(p.name for p in model_dir.iterdir()) == SENTIMENT_ARTIFACTS
    assert tiny_model.result.onnx_path == model_dir / "btcusdt_sentiment.onnx"
    assert tiny_model.result.plot_path.read_bytes().startswith(b"\x89PNG")
    # The staging folder beside it is gone.
    assert [p.name for p in model_dir.parent.iterdir()] == ["model"]


def test_a_price_only_run_is_named_price_and_has_no_sentiment_feature(
    tiny_price_model: TinyModel,
):
    names = sorted(p.name for p in tiny_price_model.model_dir.iterdir())
    assert names == [n.replace("sentiment", "price") for n in SENTIMENT_ARTIFACTS]
    metadata = tiny_price_model.result.metadata
    assert metadata["kind"] == "price" and metadata["uses_sentiment"] is False
    assert "fear_greed" not in metadata["feature_names"]
    assert "force_price_only" in metadata["sentiment_reason"]


def test_metadata_holds_every_field_the_contract_and_the_issue_name(tiny_model: TinyModel):
    metadata = json.loads(tiny_model.result.metadata_path.read_text())
    issue_fields = [
        "sentiment_reason",
        "market_conditions",
        "metrics",
        "parity",
        "library_versions",
        "code",
        "seed",
        "duration_seconds",
        "hardware",
        "purge_bars",
    ]
    missing = [k for k in (*REQUIRED_METADATA_KEYS, *issue_fields) if k not in metadata]
    assert missing == []
    assert metadata["name"] == "btcusdt_sentiment"
    assert metadata["version"] is None
    assert metadata["uses_sentiment"] is True and metadata["feature_names"][-1] == "fear_greed"
    assert metadata["onnx"] == {
        "input_name": "features",
        "output_name": "prediction",
        "input_shape": [None, 8, len(metadata["feature_names"])],
        "output_shape": [None, 1],
        "opset": 17,
    }
    onnx_bytes = tiny_model.result.onnx_path.read_bytes()
    assert metadata["onnx_sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    assert metadata["data"]["rows"] == 600
    assert len(metadata["data"]["content_hash"]) == 64
    for split in ("train", "validation", "test"):
        assert set(metadata["metrics"][split]) >= {"loss", "directional_accuracy"}
        assert 0 <= metadata["metrics"][split]["directional_accuracy"] <= 1
    assert metadata["library_versions"]["tf2onnx"] == "1.17.0"
    assert metadata["seed"] == 42
    assert metadata["duration_seconds"] > 0
    assert metadata["hardware"]["device"] in ("CPU", "GPU")
    assert metadata["training"]["epochs_run"] == 2


def test_parity_figure_is_recorded_and_within_the_limit(tiny_model: TinyModel):
    metadata = tiny_model.result.metadata
    parity = metadata["parity"]
    assert 0 <= parity["max_abs_diff"] <= 1e-4
    assert parity["samples"] == metadata["splits"]["test"]["rows"]
    golden = np.asarray(metadata["golden"]["inputs"])
    assert golden.shape == (16, 8, len(metadata["feature_names"]))
    assert np.asarray(metadata["golden"]["outputs"]).shape == (16, 1)


def test_splits_are_chronological_with_purge_gaps_and_a_recorded_out_of_sample_start(
    tiny_model: TinyModel,
):
    metadata = tiny_model.result.metadata
    splits = {k: {n: v for n, v in s.items() if n != "rows"} for k, s in metadata["splits"].items()}
    bars = {k: {n: pd.Timestamp(v) for n, v in s.items()} for k, s in splits.items()}
    hour = pd.Timedelta(hours=1)
    needed = metadata["window"] + metadata["horizon"]
    for before, after in (("train", "validation"), ("validation", "test")):
        gap = (bars[after]["first_decision_bar"] - bars[before]["last_decision_bar"]) / hour - 1
        assert gap >= needed
        # No window of the later split reads a bar whose return the earlier one learned.
        assert (
            bars[after]["first_decision_bar"] - (metadata["window"] - 1) * hour
            > (bars[before]["last_target_bar"])
        )
    out_of_sample = pd.Timestamp(metadata["out_of_sample_from"])
    assert out_of_sample > bars["validation"]["last_target_bar"]
    assert out_of_sample <= bars["test"]["first_decision_bar"]


def test_normalisation_is_fitted_on_the_training_split_only(tiny_model: TinyModel):
    metadata = tiny_model.result.metadata
    train = metadata["splits"]["train"]
    features = compute_features(
        tiny_model.candles,
        tiny_model.sentiment,
        FeatureParams.from_dict(metadata["feature_params"]),
    )
    first = pd.Timestamp(train["first_decision_bar"]) - (metadata["window"] - 1) * pd.Timedelta(
        hours=1
    )
    rows = features.loc[first : pd.Timestamp(train["last_decision_bar"])]
    for name in metadata["feature_names"]:
        assert metadata["normalization"]["mean"][name] == pytest.approx(rows[name].mean())
    # The whole frame's mean differs, so the check above can tell them apart.
    whole = features.dropna()["log_return_1"].mean()
    assert metadata["normalization"]["mean"]["log_return_1"] != pytest.approx(whole)


def test_inference_computes_the_same_inputs_and_outputs_as_training(tiny_model: TinyModel):
    metadata = tiny_model.result.metadata
    test_first = pd.Timestamp(metadata["splits"]["test"]["first_decision_bar"])
    test_rows = metadata["splits"]["test"]["rows"]
    golden_bars = test_first + golden_sample_rows(test_rows, 16) * pd.Timedelta(hours=1)
    inputs = model_inputs(tiny_model.candles, tiny_model.sentiment, metadata)
    served = inputs.windows[inputs.index.get_indexer(golden_bars)]
    np.testing.assert_allclose(served, np.asarray(metadata["golden"]["inputs"]), atol=1e-6)
    predictor = OnnxPredictor.from_dir(tiny_model.model_dir)
    predictions = predictor.predict(tiny_model.candles, tiny_model.sentiment)
    np.testing.assert_allclose(
        predictions.loc[golden_bars].to_numpy(),
        np.asarray(metadata["golden"]["outputs"])[:, 0],
        atol=1e-6,
    )


def test_progress_is_reported_after_every_epoch(tiny_model: TinyModel):
    reported = tiny_model.epochs_reported
    assert [(epoch, total) for epoch, total, _ in reported] == [(1, 2), (2, 2)]
    assert {"loss", "val_loss"} <= set(reported[0][2])


def test_short_history_is_refused_with_what_there_is_and_what_is_needed(
    shared_data_dir: Path, tmp_path: Path
):
    candles = tiny_candles(shared_data_dir)
    with pytest.raises(InsufficientHistoryError) as refused:
        train_model(candles, None, tiny_config(allow_short_history=False), tmp_path / "out")
    message = str(refused.value)
    assert "600 candles cover 25.0 days" in message
    assert "at least 183 days" in message
    assert not (tmp_path / "out").exists()


def test_allowed_short_history_is_recorded_and_warned_about(tiny_model: TinyModel):
    assert tiny_model.result.metadata["allow_short_history"] is True
    assert any("allow_short_history" in w for w in tiny_model.result.warnings)
    assert any("market conditions unknown" in w for w in tiny_model.result.warnings)


def test_a_failure_mid_run_leaves_nothing_in_the_output_folder(
    shared_data_dir: Path, tmp_path: Path
):
    output = tmp_path / "out"
    output.mkdir()

    def fail_after_first_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
        raise RuntimeError("worker stopped")

    with pytest.raises(RuntimeError, match="worker stopped"):
        train_model(
            tiny_candles(shared_data_dir),
            None,
            tiny_config(force_price_only=True),
            output,
            on_epoch=fail_after_first_epoch,
        )
    assert list(output.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_candles_with_a_gap_are_refused(shared_data_dir: Path, tmp_path: Path):
    candles = tiny_candles(shared_data_dir)
    holed = candles.drop(candles.index[300])
    with pytest.raises(TrainingError, match="1 unrepaired gap"):
        train_model(holed, None, tiny_config(), tmp_path / "out")
    with pytest.raises(TrainingError, match="no candles"):
        train_model(candles.iloc[:0], None, tiny_config(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_options_are_refused_naming_the_option():
    with pytest.raises(ValueError, match="window"):
        TrainingConfig(window=0)
    with pytest.raises(ValueError, match="purge_bars must be at least window \\+ horizon = 72"):
        TrainingConfig(purge_bars=10)
    with pytest.raises(ValueError, match="architecture"):
        TrainingConfig(architecture="transformer")
    with pytest.raises(ValueError, match="interval"):
        TrainingConfig(interval="hourly")
    with pytest.raises(ValueError, match="horizon must be 1 to 24 bars, got 25"):
        TrainingConfig(horizon=25)
    with pytest.raises(ValueError, match="objective must be one of"):
        TrainingConfig(objective="ranking")
    with pytest.raises(ValueError, match="entry must be a finite number"):
        TrainingConfig(entry=float("nan"))
    with pytest.raises(ValueError, match="exit must be a finite number"):
        TrainingConfig(exit=float("inf"))
    with pytest.raises(ValueError, match="min_hold must be >= 0"):
        TrainingConfig(min_hold=-2)


def test_metadata_names_target_horizon_objective_and_the_strategy(tiny_model: TinyModel):
    metadata = tiny_model.result.metadata
    assert (metadata["target"], metadata["horizon"], metadata["objective"]) == (
        "log_return",
        1,
        "regression",
    )
    assert metadata["calibration"] is None
    assert metadata["strategy"] == {
        "name": "ml_basic",
        "units": "expected_return",
        "params": {"entry": 0.0, "exit": 0.0, "min_hold": 0},
    }
    assert metadata["purge_bars"] >= metadata["horizon"]


def test_a_classifier_exports_calibrated_probabilities_traded_in_probability_units(
    shared_data_dir: Path, tmp_path: Path
):
    candles, sentiment = tiny_candles(shared_data_dir), load_sentiment(shared_data_dir)
    config = tiny_config(objective="classification", horizon=3, force_price_only=True)
    result = train_model(candles, sentiment, config, tmp_path / "model")
    metadata = result.metadata
    assert (metadata["target"], metadata["horizon"]) == ("log_return_sign", 3)
    assert metadata["calibration"]["method"] == "platt"
    assert metadata["calibration"]["fitted_on"] == "validation"
    assert metadata["strategy"]["units"] == "probability"
    assert metadata["onnx"]["output_shape"] == [None, 1]
    predictor = OnnxPredictor.from_dir(result.output_dir)  # every start-up check holds
    probabilities = predictor.predict(candles, None).dropna()
    assert ((probabilities > 0) & (probabilities < 1)).all()
    # Calibrated on the selection split: no worse there than a constant 0.5 (Brier 0.25) by much.
    validation = metadata["metrics"]["validation"]
    assert validation["brier"] <= 0.3
    # The default levels: quantiles of the model's own probabilities on the selection split,
    # recomputed here from the exported model over exactly that split's decision bars.
    selection = metadata["splits"]["validation"]
    chosen = probabilities.loc[selection["first_decision_bar"] : selection["last_decision_bar"]]
    assert len(chosen) == selection["rows"]
    params = metadata["strategy"]["params"]
    assert params["entry"] == pytest.approx(np.quantile(chosen, DEFAULT_ENTRY_QUANTILE), abs=1e-5)
    assert params["exit"] == pytest.approx(
        min(np.quantile(chosen, DEFAULT_EXIT_QUANTILE), params["entry"]), abs=1e-5
    )
    assert params["min_hold"] == 0
    strategy = get_strategy("ml_basic", predictor=predictor)  # levels read from metadata
    assert strategy.params.units == "probability" and strategy.entry_level == params["entry"]
    # In its own units the levels sit inside the model's range, so it trades after selection.
    test = metadata["splits"]["test"]
    held = strategy.targets(candles).loc[test["first_decision_bar"] : test["last_decision_bar"]]
    assert 0 < held.mean() < 1
    assert (held.diff() > 0).sum() >= 1


def test_a_conv1d_window_shorter_than_its_two_kernels_is_refused_before_keras_sees_it():
    with pytest.raises(ValueError, match=r"at least 9 bars .* kernel_size 5.* got 8"):
        TrainingConfig(window=8)
    with pytest.raises(ValueError, match="at least 5 bars"):
        TrainingConfig(window=4, kernel_size=3)
    assert TrainingConfig(window=9).window == 9  # 9 - 2 * (5 - 1) leaves one step
    assert TrainingConfig(window=8, architecture="lstm").window == 8  # no kernel


def test_sentiment_that_does_not_cover_the_data_falls_back_to_price_with_the_reason(
    shared_data_dir: Path, tiny_model: TinyModel
):
    candles = tiny_model.candles
    ends_early = tiny_model.sentiment.loc[: candles.index[0] - pd.Timedelta(days=10)]
    choice = choose_sentiment(candles, ends_early, tiny_config())
    assert choice.use is False
    assert "does not cover the training range" in choice.reason
    assert choose_sentiment(candles, None, tiny_config()).use is False
    assert choose_sentiment(candles, tiny_model.sentiment, tiny_config()).use is True


def test_market_conditions_count_up_down_and_sideways_windows():
    index = pd.date_range("2024-01-01", periods=24 * 90, freq="1h", tz="UTC")
    month = 24 * 30
    # A rise of 20%, a fall of 20%, then flat.
    steps = np.concatenate(
        [np.full(month, np.log(1.2) / month), np.full(month, np.log(0.8) / month), np.zeros(month)]
    )
    close = pd.Series(100 * np.exp(np.cumsum(steps)), index=index)
    conditions = market_conditions(close, 30, 0.05)
    assert conditions["windows"] == 3
    assert conditions["shares"] == pytest.approx({"up": 1 / 3, "down": 1 / 3, "sideways": 1 / 3})
    assert conditions["missing"] == []
    assert market_conditions(close.iloc[:month], 30, 0.05)["missing"] == ["down", "sideways"]


def test_the_registry_can_stamp_a_version_without_breaking_the_checks(
    tiny_model: TinyModel, tmp_path: Path
):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model.model_dir, copy)
    set_metadata_version(copy / "btcusdt_sentiment_metadata.json", 3)
    predictor = OnnxPredictor.from_dir(copy)
    assert predictor.version == 3
    assert predictor.sha256 == tiny_model.result.onnx_sha256
    with pytest.raises(ValueError, match="positive integer"):
        set_metadata_version(copy / "btcusdt_sentiment_metadata.json", 0)


def test_too_few_bars_for_the_splits_are_refused_with_the_counts(
    shared_data_dir: Path, tmp_path: Path
):
    candles = tiny_candles(shared_data_dir).iloc[:120]
    with pytest.raises(TrainingError, match=r"each needs at least 20") as refused:
        train_model(candles, None, tiny_config(), tmp_path / "out")
    assert "window 8" in str(refused.value)
    assert not (tmp_path / "out").exists()
