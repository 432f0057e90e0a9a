from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.engine.training.tiny_models import TinyModel, trained_tiny_model


@pytest.fixture(scope="session")
def tiny_model(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return trained_tiny_model("sentiment", shared_data_dir, tmp_path_factory)


@pytest.fixture
def model_copy(tiny_model: TinyModel, tmp_path: Path) -> Path:
    """A private copy of the tiny model's folder that a test may break."""
    target = tmp_path / "model"
    shutil.copytree(tiny_model.model_dir, target)
    return target
