"""A small real world for registry-level tests: a store of real candles and a tiny model.

Several test packages need the same two things; they are built here once. The model is
trained at most once per test session (it is read-only once written).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.data import import_klines_csv, import_sentiment_csv
from engine.training import train_model
from tests.engine.features.csv_frames import load_sentiment
from tests.engine.training.tiny_models import tiny_candles, tiny_config

_FULL_MODEL: dict[str, Path] = {}


def write_csv_slice(source: Path, target: Path, start: str, rows: int) -> Path:
    """`rows` candles of a shared CSV from the line whose date starts with `start`."""
    lines = source.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    target.write_text("\n".join([lines[0], *lines[first : first + rows]]) + "\n")
    return target


def build_btc_store(shared_data_dir: Path, folder: Path, *, start: str, rows: int) -> Path:
    """A store in ``folder/store``: `rows` real BTCUSDT hours from `start`, and the index."""
    csv = write_csv_slice(shared_data_dir / "BTCUSDT-1h.csv", folder / "btc.csv", start, rows)
    import_klines_csv(csv, folder / "store", symbol="BTCUSDT", interval="1h")
    import_sentiment_csv(shared_data_dir / "fear_greed_index.csv", folder / "store")
    return folder / "store"


def tiny_full_model(shared_data_dir: Path, factory: pytest.TempPathFactory) -> Path:
    """A tiny sentiment model on the first 600 hours of 2024, under full-history rules.

    The six-month minimum is lowered in its config rather than waived, so the registry
    treats it like any production model (a waived one can never pass a gate).
    """
    if "model" not in _FULL_MODEL:
        result = train_model(
            tiny_candles(shared_data_dir),
            load_sentiment(shared_data_dir),
            tiny_config(allow_short_history=False, min_history_days=1),
            factory.mktemp("tiny_full_model") / "model",
        )
        _FULL_MODEL["model"] = result.output_dir
    return _FULL_MODEL["model"]
