"""How the test hosts run the engine (shared by the fixtures, tests and the benchmark)."""

from __future__ import annotations

import sys
from pathlib import Path

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")
MODEL_NAME = "btcusdt_sentiment"


# --------------------------------------------------------------------------- engine


def engine_command(model_dir: Path, status_file: Path) -> list[str]:
    """How a host starts the engine. The stand-in honours the contract of engine.live."""
    return [
        sys.executable,
        str(FAKE_ENGINE),
        "ml_basic",
        "--paper-trading",
        "--model-dir",
        str(model_dir),
        "--model",
        MODEL_NAME,
        "--status-file",
        str(status_file),
    ]


def check_only_command() -> str:
    """The staging check command template (the engine's --check-only on uploaded files)."""
    return (
        f"{sys.executable} {FAKE_ENGINE} ml_basic --paper-trading --model-dir {{candidate_dir}}"
        " --model {name} --check-only --json"
    )
