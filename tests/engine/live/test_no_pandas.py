"""The engine starts, checks its model and decides without pandas (issue 29): pandas is 58%
of what importing it used to cost. Replay and paper-from-CSV may still load it, lazily.

Each check runs in a fresh interpreter, the way a host starts the engine, and reads
`sys.modules` (or `-X importtime`) there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.live.conftest import PROJECT_ROOT, engine_env
from tests.engine.training.tiny_models import TinyModel, trained_tiny_model


def _imported_modules(args: list[str], tmp_path: Path) -> set[str]:
    """Every module `python -X importtime -m engine.live ARGS` imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "engine.live", *args],
        cwd=PROJECT_ROOT, env=engine_env(tmp_path), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_help_loads_no_pandas(tmp_path: Path) -> None:
    modules = _imported_modules(["--help"], tmp_path)
    assert "engine.live.cli" in modules
    assert "pandas" not in modules


def test_check_only_loads_no_pandas(tmp_path: Path, model_dir: Path) -> None:
    modules = _imported_modules(
        ["ml_basic", "--check-only", "--model-dir", str(model_dir)], tmp_path
    )
    assert "onnxruntime" in modules  # the model really was loaded and checked
    assert "pandas" not in modules


@pytest.fixture(scope="module")
def price_model(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return trained_tiny_model("price", shared_data_dir, tmp_path_factory)


# Start-up as engine.live.app does it, then 200 live bars through the engine, candles read
# with the csv module: at the end, pandas must still not be loaded.
PROBE = """
import csv, json, sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from engine.live import app
from engine.live.brokers import PaperBroker
from engine.live.candles import Candle
from engine.live.config import RiskLimits
from engine.live.journal import Journal
from engine.live.risk import RiskManager
from engine.live.runner import TradingEngine
from engine.live.status import StatusReporter
from engine.live.strategy import build_strategy

model_dir, csv_path, folder = map(Path, sys.argv[1:4])
predictor = app.load_predictor(model_dir, None)
strategy, wrapped = build_strategy("ml_basic", model=predictor, fee_bps=10.0, slippage_bps=5.0)
engine = TradingEngine(
    strategy=strategy, predictor=wrapped, broker=PaperBroker(fee_bps=10.0, slippage_bps=5.0),
    journal=Journal(folder / "journal.jsonl"), risk=RiskManager(RiskLimits()),
    status=StatusReporter(folder / "status.json", mode="paper"), symbol="BTCUSDT",
    interval=timedelta(hours=1), history_size=predictor.required_history + 1,
    initial_cash=10_000.0, execute_on_close=True,
)
with open(csv_path, newline="") as handle:
    rows = list(csv.DictReader(handle))[-300:]
decided = 0
for row in rows:
    when = datetime.fromisoformat(row["date"]).replace(tzinfo=timezone.utc)
    candle = Candle(when, *(float(row[k]) for k in ("open", "high", "low", "close", "volume")))
    result = engine.on_candle(candle)
    decided += result.target is not None
print(json.dumps({"pandas": "pandas" in sys.modules, "decided": decided,
                  "decider": engine.decider is not None}))
"""


def test_the_live_decision_path_runs_without_pandas(
    tmp_path: Path, price_model: TinyModel, shared_data_dir: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(price_model.model_dir),
         str(shared_data_dir / "BTCUSDT-1h.csv"), str(tmp_path)],
        cwd=PROJECT_ROOT, env=engine_env(tmp_path), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome == {"pandas": False, "decided": outcome["decided"], "decider": True}
    assert outcome["decided"] > 150
