"""Fixtures of the engine tests: a tiny real model, real candles, and engine subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.engine.features.csv_frames import load_candles, load_sentiment
from tests.engine.training.tiny_models import TinyModel, trained_tiny_model

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def tiny_model(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A sentiment model trained for real (TensorFlow, 2 epochs, 600 bars) once per session."""
    return trained_tiny_model("sentiment", shared_data_dir, tmp_path_factory)


@pytest.fixture
def model_dir(tiny_model: TinyModel, tmp_path: Path) -> Path:
    """A private copy of the model folder that a test may break."""
    target = tmp_path / "model"
    shutil.copytree(tiny_model.model_dir, target)
    return target


@pytest.fixture(scope="session")
def all_candles(shared_data_dir: Path) -> pd.DataFrame:
    return load_candles(shared_data_dir)


@pytest.fixture(scope="session")
def sentiment(shared_data_dir: Path) -> pd.Series:
    return load_sentiment(shared_data_dir)


@pytest.fixture(scope="session")
def after_training(tiny_model: TinyModel) -> pd.Timestamp:
    """First bar after the tiny model's training data: out of sample."""
    return tiny_model.candles.index[-1] + pd.Timedelta(hours=1)


def engine_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment of an engine subprocess: install root in tmp, no inherited trading keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINANCE_", "TRADEBOT_"))}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env["TRADEBOT_INSTALL_ROOT"] = str(tmp_path / "root")
    env.update(extra)
    return env


def engine_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "engine.live", *map(str, args)]


def run_engine(
    tmp_path: Path, *args: str | Path, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        engine_command(*args),
        cwd=PROJECT_ROOT,
        env=engine_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
