"""run_backtest ml_basic through a real ONNX model trained on real candles (tiny, 2 epochs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine.backtest import InSampleWindowError, run_backtest

pytestmark = pytest.mark.slow


def test_ml_basic_with_a_trained_onnx_model(shared_data_dir: Path, tmp_path_factory, tmp_path):
    from tests.engine.features.csv_frames import load_candles, load_sentiment
    from tests.engine.training.tiny_models import trained_tiny_model

    tiny = trained_tiny_model("price", shared_data_dir, tmp_path_factory)
    candles = load_candles(shared_data_dir)
    candles = candles.loc[tiny.candles.index[0] : tiny.candles.index[-1] + pd.Timedelta(days=20)]
    sentiment = load_sentiment(shared_data_dir)

    run = run_backtest(
        "ml_basic",
        candles,
        sentiment=sentiment,
        model_dir=tiny.model_dir,
        days=15,
        output_dir=tmp_path,
    )
    assert run.sample_status == "out_of_sample"
    assert run.warmup_bars_in_window == 0
    assert run.model["onnx_sha256"] == tiny.result.onnx_sha256
    assert run.model["name"] == tiny.result.name
    assert run.window_start >= pd.Timestamp(tiny.result.metadata["out_of_sample_from"])
    assert len(run.result.equity) == 15 * 24
    assert set(run.result.targets.unique()) <= {0.0, 1.0}
    assert run.files["plot"].exists()

    with pytest.raises(InSampleWindowError):
        run_backtest(
            "ml_basic",
            candles,
            sentiment=sentiment,
            model_dir=tiny.model_dir,
            start=tiny.candles.index[200],
        )
