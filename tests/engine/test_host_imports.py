"""What importing the engine loads: a production host has only requirements/engine.txt, and
start-up time counts, so heavy or absent packages must load only where they are used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Not in requirements/engine.txt, or (python-binance) too slow to load before it is needed.
HEAVY = ("matplotlib", "tensorflow", "keras", "tf2onnx", "django", "celery", "onnx", "binance")

PROBE = """
import json, sys
loaded = {}
for package in sys.argv[1].split(","):
    __import__(package)
    loaded[package] = sorted(m for m in sys.argv[2].split(",") if m in sys.modules)
from engine.data import make_client
make_client("http://127.0.0.1:9")
loaded["after make_client"] = "binance" in sys.modules
print(json.dumps(loaded))
"""


def test_engine_packages_load_no_plotting_no_frameworks_and_no_binance_until_fetching() -> None:
    packages = (
        "engine.data",
        "engine.features",
        "engine.inference",
        "engine.strategies",
        "engine.backtest",
        "engine.backtest.costs",
        "engine.live",
        "engine.live.app",
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(packages), ",".join(HEAVY)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout)
    assert {p: loaded[p] for p in packages} == {p: [] for p in packages}
    assert loaded["after make_client"] is True, "make_client must still load python-binance"
