from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.training.tiny_models import TinyModel, trained_tiny_model


@pytest.fixture(scope="session")
def tiny_model(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return trained_tiny_model("sentiment", shared_data_dir, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_price_model(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return trained_tiny_model("price", shared_data_dir, tmp_path_factory)
