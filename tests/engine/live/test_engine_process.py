"""The real engine as a subprocess on replayed real bars: load, trade, SIGTERM, resume."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from engine.inference import OnnxPredictor
from engine.strategies.ml_basic import round_trip_cost
from tests.engine.live.conftest import PROJECT_ROOT, engine_command, engine_env

pytestmark = pytest.mark.slow


def _journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _status(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def test_engine_trades_stops_on_sigterm_and_resumes(
    model_dir: Path, all_candles, sentiment, after_training, shared_data_dir, tmp_path
) -> None:
    start, end = after_training, after_training + pd.Timedelta(days=8)
    window = all_candles.loc[start - pd.Timedelta(days=2) : end]
    predictor = OnnxPredictor.from_dir(model_dir)
    threshold = float(predictor.predict(window, sentiment).median()) - round_trip_cost(10, 5)
    status_file, journal_dir = tmp_path / "status.json", tmp_path / "journal"
    args = [
        "ml_basic", "--paper-trading", "--model-dir", model_dir,
        "--status-file", status_file, "--journal-dir", journal_dir,
        "--replay", "--candles-csv", shared_data_dir / "BTCUSDT-1h.csv",
        "--sentiment-csv", shared_data_dir / "fear_greed_index.csv",
        "--from", start.isoformat(), "--to", end.isoformat(), "--threshold", str(threshold),
    ]  # fmt: skip
    journal_file = journal_dir / "btcusdt-paper.jsonl"

    first = subprocess.Popen(
        engine_command(*args, "--speed", str(3600 * 25)),  # 25 bars a second
        cwd=PROJECT_ROOT, env=engine_env(tmp_path), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        running = _wait_for(
            lambda: (
                (s := _status(status_file)) and s["state"] == "running" and s["position"] > 0 and s
            ),
            what="a long position in the status file",
        )
        first.send_signal(signal.SIGTERM)
        _, log = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, log
    assert log.count("model loaded: btcusdt_sentiment version=None sha256=") == 1
    assert running["model_sha256"] == predictor.sha256
    assert running["mode"] == "paper" and running["pid"] == first.pid
    stopped = _status(status_file)
    assert stopped["state"] == "stopped" and stopped["position"] > 0
    records = _journal(journal_file)
    assert records[-1]["type"] == "session_stop" and records[-1]["reason"] == "signal"
    assert any(r["type"] == "fill" for r in records)
    last_before = [r for r in records if r["type"] == "state"][-1]

    second = subprocess.run(
        engine_command(*args, "--speed", "0"), cwd=PROJECT_ROOT, env=engine_env(tmp_path),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert f"position {stopped['position']:.8f}" in second.stderr
    assert "resumed from journal" in second.stderr
    records = _journal(journal_file)
    sessions = [r for r in records if r["type"] == "session_start"]
    assert len(sessions) == 2
    decided = [r["candle"] for r in records if r["type"] == "decision"]
    assert len(decided) == len(set(decided)), "a candle was decided twice"
    # Every bar from the first to the last exactly once, across both sessions.
    processed = [r["last_candle"] for r in records if r["type"] == "state"]
    distinct = pd.DatetimeIndex(
        [t for i, t in enumerate(processed) if i == 0 or t != processed[i - 1]]
    )
    assert distinct.is_unique
    assert (distinct[1:] - distinct[:-1] == pd.Timedelta(hours=1)).all()
    assert pd.Timestamp(last_before["last_candle"]) in distinct
    assert distinct[-1] == end - pd.Timedelta(hours=1)
