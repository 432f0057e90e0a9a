"""The real engine as a subprocess on replayed real bars: load, trade, SIGTERM, resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
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
    start, end = after_training, after_training + pd.Timedelta(days=4)
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
    # Every bar from the first to the last exactly once, across both sessions. A bar that
    # changed nothing has its decision record and no state record (issue 29).
    processed = {r["last_candle"] for r in records if r["type"] == "state"} | set(decided)
    distinct = pd.DatetimeIndex(sorted(pd.Timestamp(t) for t in processed if t))
    distinct = distinct[distinct >= start]
    assert distinct.is_unique
    assert (distinct[1:] - distinct[:-1] == pd.Timedelta(hours=1)).all()
    assert pd.Timestamp(last_before["last_candle"]) in distinct
    assert distinct[-1] == end - pd.Timedelta(hours=1)


def _replay_args(model_dir: Path, tmp_path: Path, data: Path, start: pd.Timestamp) -> list:
    return [
        "ml_basic", "--paper-trading", "--model-dir", model_dir,
        "--status-file", tmp_path / "status.json", "--journal-dir", tmp_path / "journal",
        "--replay", "--candles-csv", data / "BTCUSDT-1h.csv",
        "--sentiment-csv", data / "fear_greed_index.csv", "--threshold", "-1",
        "--from", start.isoformat(), "--to", (start + pd.Timedelta(hours=6)).isoformat(),
    ]  # fmt: skip


def test_a_corrupt_journal_stops_the_start(model_dir, after_training, shared_data_dir, tmp_path):
    from tests.engine.live.conftest import run_engine

    journal = tmp_path / "journal" / "btcusdt-paper.jsonl"
    journal.parent.mkdir()
    journal.write_text('{"seq": 1, "at": "x", "type": "state"\n')
    result = run_engine(
        tmp_path, *_replay_args(model_dir, tmp_path, shared_data_dir, after_training)
    )
    assert result.returncode == 4, result.stderr
    assert f"journal {journal} line 1: invalid JSON" in result.stderr
    assert journal.read_text() == '{"seq": 1, "at": "x", "type": "state"\n', "left untouched"


def test_latched_kill_switch_holds_until_the_reset_flag(
    model_dir, after_training, shared_data_dir, tmp_path
) -> None:
    from engine.live.journal import Journal
    from tests.engine.live.conftest import run_engine

    journal_file = tmp_path / "journal" / "btcusdt-paper.jsonl"
    latched = Journal(journal_file)
    latched.append("kill_switch", latched=True, reason="daily loss in an earlier deploy")
    latched.close()
    args = _replay_args(model_dir, tmp_path, shared_data_dir, after_training)

    held = run_engine(tmp_path, *args)  # threshold -1: ml_basic wants to be long every bar
    assert held.returncode == 0, held.stderr
    assert not [r for r in _journal(journal_file) if r["type"] in ("order", "fill")]
    status = _status(tmp_path / "status.json")
    assert status["kill_switch"] is True and status["position"] == 0.0

    later = _replay_args(
        model_dir, tmp_path, shared_data_dir, after_training + pd.Timedelta(hours=6)
    )
    reset = run_engine(tmp_path, *later, "--reset-kill-switch")
    assert reset.returncode == 0, reset.stderr
    assert "kill switch reset by --reset-kill-switch" in reset.stderr
    records = _journal(journal_file)
    assert [r["latched"] for r in records if r["type"] == "kill_switch"] == [True, False]
    assert any(r["type"] == "fill" for r in records)
    assert _status(tmp_path / "status.json")["kill_switch"] is False


def test_replay_from_the_data_store(
    model_dir, all_candles, sentiment, after_training, tmp_path
) -> None:
    from engine.data.store import merge_candles, merge_sentiment
    from tests.engine.live.conftest import run_engine

    store = tmp_path / "store"
    merge_candles(store, "BTCUSDT", "1h", all_candles.loc["2024-01-01":"2024-02-15"])
    merge_sentiment(store, sentiment)
    end = after_training + pd.Timedelta(hours=12)
    result = run_engine(
        tmp_path, "ml_basic", "--paper-trading", "--model-dir", model_dir, "--data-dir", store,
        "--status-file", tmp_path / "status.json", "--journal-dir", tmp_path / "journal",
        "--replay", "--from", after_training.isoformat(), "--to", end.isoformat(),
        "--threshold", "-1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = _journal(tmp_path / "journal" / "btcusdt-paper.jsonl")
    decided = [pd.Timestamp(r["candle"]) for r in records if r["type"] == "decision"]
    assert decided[0] == after_training and decided[-1] == end - pd.Timedelta(hours=1)
    assert len(decided) == 12, "warm-up bars before --from only feed the history"
    assert _status(tmp_path / "status.json")["position"] > 0


HOST_BLOCKER = """
import runpy, sys
# What a production host lacks (requirements/engine.txt only): importing these must fail.
for name in ("matplotlib", "tensorflow", "keras", "tf2onnx", "django", "celery", "onnx", "tqdm"):
    sys.modules[name] = None
sys.argv = ["engine.live", *sys.argv[1:]]
runpy.run_module("engine.live", run_name="__main__")
"""


def test_engine_runs_with_only_the_engine_requirements(
    model_dir, after_training, shared_data_dir, tmp_path
) -> None:
    args = _replay_args(model_dir, tmp_path, shared_data_dir, after_training)
    result = subprocess.run(
        [sys.executable, "-c", HOST_BLOCKER, *map(str, args)],
        cwd=PROJECT_ROOT, env=engine_env(tmp_path), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model loaded: btcusdt_sentiment" in result.stderr
