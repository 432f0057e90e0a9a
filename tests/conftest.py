"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real market data beside the project (three years of hourly candles, Fear & Greed)."""
    if not (SHARED_DATA_DIR / "BTCUSDT-1h.csv").exists():
        pytest.fail(f"real market data not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR
