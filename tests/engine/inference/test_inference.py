from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.features import FeatureError
from engine.inference import (
    CHECK_NAMES,
    ModelCheckError,
    OnnxPredictor,
    check_model_dir,
)
from tests.engine.training.tiny_models import TinyModel

pytestmark = pytest.mark.slow

ONNX = "btcusdt_sentiment.onnx"
METADATA = "btcusdt_sentiment_metadata.json"


def read_metadata(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / METADATA).read_text())


def write_metadata(model_dir: Path, metadata: dict[str, Any]) -> None:
    (model_dir / METADATA).write_text(json.dumps(metadata))


def failed_check(model_dir: Path, name: str | None = None) -> tuple[str, str]:
    """The first failed check and its detail; also proves from_dir refuses the same way."""
    results = check_model_dir(model_dir, name)
    assert [r.name for r in results] == list(CHECK_NAMES)
    failures = [r for r in results if not r.ok]
    assert failures, "every check passed"
    with pytest.raises(ModelCheckError) as refused:
        OnnxPredictor.from_dir(model_dir, name)
    assert refused.value.check == failures[0].name
    later = results[[r.name for r in results].index(failures[0].name) + 1 :]
    assert all(r.detail.startswith("not run") for r in later)
    return failures[0].name, failures[0].detail


def test_a_good_model_passes_every_check_in_order(model_copy: Path):
    results = check_model_dir(model_copy)
    assert [(r.name, r.ok) for r in results] == [(name, True) for name in CHECK_NAMES]
    assert check_model_dir(model_copy, "btcusdt_sentiment")[-1].ok


def test_missing_onnx_file_fails_files_present(model_copy: Path):
    (model_copy / ONNX).unlink()
    check, detail = failed_check(model_copy)
    assert check == "files_present" and ONNX in detail


def test_a_folder_without_models_or_with_several_fails_files_present(model_copy: Path):
    (model_copy / "btcusdt_price_metadata.json").write_text("{}")
    check, detail = failed_check(model_copy)
    assert check == "files_present" and "several models" in detail
    assert check_model_dir(model_copy, "btcusdt_sentiment")[-1].ok
    check, detail = failed_check(model_copy / "nowhere")
    assert check == "files_present" and "no *_metadata.json" in detail


def test_truncated_onnx_file_fails_sha256(model_copy: Path):
    data = (model_copy / ONNX).read_bytes()
    (model_copy / ONNX).write_bytes(data[: len(data) // 2])
    check, detail = failed_check(model_copy)
    assert check == "sha256" and "metadata says" in detail


def test_truncated_file_with_matching_metadata_fails_onnx_loads(model_copy: Path):
    data = (model_copy / ONNX).read_bytes()[:200]
    (model_copy / ONNX).write_bytes(data)
    metadata = read_metadata(model_copy)
    metadata["onnx_sha256"] = hashlib.sha256(data).hexdigest()
    write_metadata(model_copy, metadata)
    check, detail = failed_check(model_copy)
    assert check == "onnx_loads" and "cannot load" in detail


def test_one_tampered_byte_fails_sha256(model_copy: Path):
    data = bytearray((model_copy / ONNX).read_bytes())
    data[len(data) // 2] ^= 0x01
    (model_copy / ONNX).write_bytes(bytes(data))
    assert failed_check(model_copy)[0] == "sha256"


def test_an_expected_sha256_file_is_checked_too(model_copy: Path):
    actual = hashlib.sha256((model_copy / ONNX).read_bytes()).hexdigest()
    (model_copy / f"{ONNX}.sha256").write_text(f"{actual}  {ONNX}\n")
    assert check_model_dir(model_copy)[2].ok
    (model_copy / f"{ONNX}.sha256").write_text("0" * 64 + "\n")
    check, detail = failed_check(model_copy)
    assert check == "sha256" and f"{ONNX}.sha256 expects" in detail


def test_metadata_of_another_model_fails_metadata_valid(model_copy: Path):
    metadata = read_metadata(model_copy)
    metadata["name"] = "ethusdt_sentiment"
    write_metadata(model_copy, metadata)
    check, detail = failed_check(model_copy)
    assert check == "metadata_valid" and "another model" in detail


def test_broken_or_incomplete_metadata_fails_metadata_valid(model_copy: Path):
    metadata = read_metadata(model_copy)
    del metadata["normalization"]["std"]
    del metadata["out_of_sample_from"]
    write_metadata(model_copy, metadata)
    check, detail = failed_check(model_copy)
    assert check == "metadata_valid"
    assert "out_of_sample_from" in detail and "normalization.std" in detail
    (model_copy / METADATA).write_text('{"name":\n  oops}')
    check, detail = failed_check(model_copy)
    assert check == "metadata_valid" and "line 2" in detail


def test_wrong_io_shape_or_name_fails_io_signature(model_copy: Path):
    metadata = read_metadata(model_copy)
    metadata["window"] += 1
    metadata["onnx"]["input_shape"][1] += 1
    write_metadata(model_copy, metadata)
    check, detail = failed_check(model_copy)
    assert check == "io_signature" and "has shape" in detail
    metadata = read_metadata(model_copy)
    metadata["window"] -= 1
    metadata["onnx"]["input_shape"][1] -= 1
    metadata["onnx"]["output_name"] = "signal"
    write_metadata(model_copy, metadata)
    check, detail = failed_check(model_copy)
    assert check == "io_signature" and "'signal'" in detail


def test_golden_outputs_that_do_not_reproduce_fail_golden_parity(model_copy: Path):
    metadata = read_metadata(model_copy)
    metadata["golden"]["outputs"][3][0] += 1e-3
    write_metadata(model_copy, metadata)
    check, detail = failed_check(model_copy)
    assert check == "golden_parity" and "differ by 0.001" in detail


def test_predict_gives_one_value_per_bar_with_nan_only_in_the_warm_up(
    tiny_model: TinyModel, model_copy: Path
):
    predictor = OnnxPredictor.from_dir(model_copy)
    candles = tiny_model.candles
    predictions = predictor.predict(candles, tiny_model.sentiment)
    assert predictions.index.equals(candles.index)
    warm_up = predictor.required_history - 1
    assert predictions.iloc[:warm_up].isna().all()
    assert predictions.iloc[warm_up:].notna().all()
    chunked = predictor.predict(candles, tiny_model.sentiment, chunk_size=7)
    np.testing.assert_allclose(chunked.to_numpy(), predictions.to_numpy(), equal_nan=True)


def test_a_prediction_does_not_change_when_later_bars_arrive(
    tiny_model: TinyModel, model_copy: Path
):
    predictor = OnnxPredictor.from_dir(model_copy)
    candles, sentiment = tiny_model.candles, tiny_model.sentiment
    full = predictor.predict(candles, sentiment)
    cut = 400
    earlier = predictor.predict(candles.iloc[:cut], sentiment)
    np.testing.assert_allclose(earlier.to_numpy(), full.iloc[:cut].to_numpy(), equal_nan=True)
    latest = predictor.predict_latest(candles.iloc[:cut], sentiment)
    assert latest == pytest.approx(full.iloc[cut - 1], abs=1e-7)


def test_predict_refuses_what_would_give_wrong_numbers(tiny_model: TinyModel, model_copy: Path):
    predictor = OnnxPredictor.from_dir(model_copy)
    candles = tiny_model.candles
    with pytest.raises(FeatureError, match="uses sentiment"):
        predictor.predict(candles)
    with pytest.raises(FeatureError, match="unrepaired gap"):
        predictor.predict(candles.drop(candles.index[100]), tiny_model.sentiment)
    short = candles.iloc[: predictor.required_history - 1]
    with pytest.raises(FeatureError, match=f"needs {predictor.required_history} bars"):
        predictor.predict_latest(short, tiny_model.sentiment)


def test_from_files_checks_the_same_way(model_copy: Path, tmp_path: Path):
    predictor = OnnxPredictor.from_files(model_copy / ONNX, model_copy / METADATA)
    assert predictor.name == "btcusdt_sentiment"
    other = tmp_path / "elsewhere.onnx"
    other.write_bytes((model_copy / ONNX).read_bytes())
    with pytest.raises(ModelCheckError) as refused:
        OnnxPredictor.from_files(other, model_copy / METADATA)
    assert refused.value.check == "metadata_valid"


def test_inference_runs_without_tensorflow():
    code = (
        "import sys, engine.inference, engine.features\n"
        "assert not {'tensorflow', 'keras', 'tf2onnx'} & set(sys.modules), 'TF imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_required_history_is_enough_for_predict_latest(tiny_model: TinyModel, model_copy: Path):
    predictor = OnnxPredictor.from_dir(model_copy)
    tail = tiny_model.candles.iloc[-predictor.required_history :]
    value = predictor.predict_latest(tail, tiny_model.sentiment)
    full = predictor.predict(tiny_model.candles, tiny_model.sentiment)
    assert value == pytest.approx(full.iloc[-1], abs=1e-7)
    assert isinstance(value, float)
