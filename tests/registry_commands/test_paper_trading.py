"""Paper trading as a lifecycle step: service, task, commands, and a real Celery worker.

Same tiny store and model as test_run_backtest (1,000 real BTCUSDT hours from 2024-01-01,
a model trained on the first 600): the version is validated on the 240 bars after its
training data, and paper traded on the bars after that (to the end of the store).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from celery.result import AsyncResult
from django.core.management import call_command
from django.core.management.base import CommandError

from models_registry import selectors
from models_registry.models import (
    AuditEvent,
    ModelState,
    ModelVersion,
    PaperTradingRun,
    RunStatus,
    ValidationRun,
)
from models_registry.services import runs
from models_registry.services.paper import PaperOptions, paper_execute, paper_run_create_inline
from tests.conftest import PROJECT_ROOT
from tests.registry_commands.test_run_backtest import GENEROUS_GATES, STORE_ROWS, backtest
from tests.support.policy import ONE_WINDOW, adopt_settings_policy

VALIDATION_DAYS = 10
PAPER_GATES = {"min_bars": 24, "max_drawdown": 1.0, "max_divergence": 1e-9}
GENEROUS = {**GENEROUS_GATES, "paper": PAPER_GATES}
STRICT = {**GENEROUS_GATES, "paper": {**PAPER_GATES, "min_bars": 10_000}}


def validated(version: ModelVersion, settings: Any, days: float = VALIDATION_DAYS) -> ModelVersion:
    """The version after a passing validation run on the ``days`` after its training data."""
    settings.TRADEBOT_GATES = GENEROUS
    backtest("ml_basic", "--days", str(days), "--model", version.name)
    version.refresh_from_db()
    assert version.state == ModelState.VALIDATED
    return version


def paper_trade(version: ModelVersion, **options: Any) -> PaperTradingRun:
    run = paper_run_create_inline(
        model_version=version, requested_by=None, options=PaperOptions(**options)
    )
    return paper_execute(run)


def first_unseen_bar(version: ModelVersion) -> pd.Timestamp:
    return pd.Timestamp(version.metadata["out_of_sample_from"]).tz_convert("UTC").ceil("1h")


def store_end() -> pd.Timestamp:
    return pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=STORE_ROWS - 1)


# --- the service ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_passing_replay_matches_the_backtest_and_readies_staging_without_moving_it(
    version: ModelVersion, media: Path, settings: Any
) -> None:
    validated(version, settings)

    run = paper_trade(version, days=14)

    version.refresh_from_db()
    assert run.status == RunStatus.PASSED and run.passed is True, run.gate_results
    assert run.mode == PaperTradingRun.MODE_REPLAY
    # A replay is a pre-check: only a forward run on staging makes a version paper_tested.
    assert version.state == ModelState.VALIDATED
    assert not AuditEvent.objects.filter(event_type="model_version_paper_tested").exists()
    assert selectors.passing_replay_run(version) == run
    # The period: after the validation window, clipped to the end of the store.
    validation = ValidationRun.objects.get(model_version=version, passed=True)
    assert validation.window_start is not None and validation.window_end is not None
    assert pd.Timestamp(validation.window_start) >= first_unseen_bar(version)
    start = pd.Timestamp(validation.window_end).tz_convert("UTC") + pd.Timedelta(hours=1)
    assert run.period_start == start
    assert run.period_end == store_end()
    assert run.bars == int((store_end() - start) / pd.Timedelta(hours=1)) + 1
    # Trade for trade the same as the backtester over the same bars.
    assert run.divergence["mismatched_trades"] == 0
    assert run.divergence["trade_count_difference"] == 0
    assert run.divergence["equity_relative"] == pytest.approx(0.0, abs=1e-12)
    report = media / run.report_dir
    paper = pd.read_csv(report / "paper_trades.csv")
    backtest_trades = pd.read_csv(report / "backtest_trades.csv")
    assert len(paper) == run.trades == run.divergence["backtest_trades"]
    assert run.trades >= 1, "the comparison needs trades"
    assert list(paper["entry_time"]) == list(backtest_trades["entry_time"])
    assert list(paper["exit_time"]) == list(backtest_trades["exit_time"])
    assert all(pd.Timestamp(t) >= start for t in paper["entry_time"])
    assert run.metrics["n_trades"] == run.trades and run.metrics["n_bars"] == run.bars
    assert {g["name"] for g in run.gate_results} == {"min_bars", "max_drawdown", "max_divergence"}
    assert run.report_dir == f"paper/{run.pk}"
    assert (report / run.plot_file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    journal = next((report / "journal").glob("*.jsonl"))
    fills = [line for line in journal.read_text().splitlines() if '"type":"fill"' in line]
    assert len(fills) == len(paper) * 2 - (paper["exit_reason"] == "open").sum()


@pytest.mark.django_db
def test_strict_gates_keep_the_version_validated_and_name_the_gate(
    version: ModelVersion, settings: Any
) -> None:
    validated(version, settings)
    settings.TRADEBOT_GATES = STRICT
    adopt_settings_policy()  # the policy is data: the environment only seeded the first one
    out = StringIO()
    call_command("paper_trade_version", version.name, "--version", "1", stdout=out)

    run = PaperTradingRun.objects.get()
    version.refresh_from_db()
    text = out.getvalue()
    assert f"replay {run.pk} of {version.name} v1: gates FAILED" in text
    assert "the version stays validated" in text
    assert "gate min_bars" in text and "FAIL" in text.split("gate min_bars")[1].splitlines()[0]
    assert run.status == RunStatus.FAILED and run.passed is False
    assert version.state == ModelState.VALIDATED
    failed = [g for g in run.gate_results if not g["passed"]]
    assert [g["name"] for g in failed] == ["min_bars"]
    assert failed[0]["value"] == run.bars and failed[0]["threshold"] == 10_000
    assert not AuditEvent.objects.filter(event_type="model_version_paper_tested").exists()


@pytest.mark.django_db
def test_too_few_bars_after_validation_is_an_error_and_keeps_the_state(
    version: ModelVersion, media: Path, settings: Any
) -> None:
    # A policy validation window that runs to the end of the store leaves nothing to paper trade.
    settings.TRADEBOT_VALIDATION_POLICY = {"days": 30, **ONE_WINDOW}
    validated(version, settings, days=30)

    run = paper_trade(version)

    version.refresh_from_db()
    assert run.status == RunStatus.ERROR and run.passed is False
    assert "too few bars to paper trade" in run.error and "fetch newer candles" in run.error
    assert run.bars == 0 and run.gate_results == [] and run.report_dir == ""
    assert version.state == ModelState.VALIDATED
    assert AuditEvent.objects.filter(event_type="paper_run_error").count() == 1
    assert not (media / "paper" / str(run.pk)).exists()


@pytest.mark.django_db
def test_a_version_that_is_not_validated_is_refused(version: ModelVersion) -> None:
    with pytest.raises(CommandError, match="only a validated version is replayed"):
        call_command("paper_trade_version", version.name, "--version", "1", stdout=StringIO())
    assert PaperTradingRun.objects.count() == 0


@pytest.mark.django_db
def test_command_records_a_run_and_reports_the_move(version: ModelVersion, settings: Any) -> None:
    validated(version, settings)
    out = StringIO()
    call_command(
        "paper_trade_version", version.name, "--version", "1", "--days", "3", "--json", stdout=out
    )

    summary = json.loads(out.getvalue())
    run = PaperTradingRun.objects.get()
    assert summary["run_id"] == run.pk and summary["bars"] == 72 == run.bars
    # A replay is a pre-check: it readies the version for staging, it moves nothing.
    assert summary["ready_for_staging"] is True and summary["version_state"] == "validated"
    requested = AuditEvent.objects.get(event_type="paper_run_requested")
    assert requested.object_id == str(run.pk) and requested.data["days"] == 3.0


# --- the engine wrapper -----------------------------------------------------------------------


def test_run_live_trading_replays_a_paper_session(model_dir: Path, store: Path, tmp_path: Path):
    start = pd.Timestamp(json.loads(next(model_dir.glob("*_metadata.json")).read_text())[
        "out_of_sample_from"]).ceil("1h")  # fmt: skip
    env = {
        **os.environ,
        "TRADEBOT_VAR_DIR": str(tmp_path / "var"),
        "TRADEBOT_DATA_DIR": str(store),
    }
    completed = subprocess.run(
        [sys.executable, "manage.py", "run_live_trading", "ml_basic", "--paper-trading",
         "--model-dir", str(model_dir), "--replay", "--from", start.isoformat(),
         "--to", (start + pd.Timedelta(hours=24)).isoformat(), "--speed", "0"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stderr.count("model loaded: btcusdt_sentiment") == 1
    # The status file and journal went to this installation's var/ folder by default.
    status = json.loads((tmp_path / "var" / "live" / "status.json").read_text())
    assert status["state"] == "stopped" and status["mode"] == "paper"
    assert pd.Timestamp(status["last_candle"]) == start + pd.Timedelta(hours=23)
    assert list((tmp_path / "var" / "live" / "journal").glob("*.jsonl"))


def test_run_live_trading_passes_on_the_engine_exit_code(tmp_path: Path) -> None:
    env = {**os.environ, "TRADEBOT_VAR_DIR": str(tmp_path / "var")}
    completed = subprocess.run(
        [sys.executable, "manage.py", "run_live_trading", "ml_basic", "--check-only"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # No model in production to default to (here no registry at all): one line naming
    # --model-dir, nothing run.
    assert completed.returncode == 1
    assert "give --model-dir DIR" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr

    model_dir = tmp_path / "empty-model-dir"
    model_dir.mkdir()
    completed = subprocess.run(
        [sys.executable, "manage.py", "run_live_trading", "ml_basic", "--check-only",
         "--model-dir", str(model_dir)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # The start-up checks fail and say where they looked; the exit code is the engine's.
    assert completed.returncode == 1
    assert f"model dir: {model_dir}" in completed.stdout
    assert "checks FAILED" in completed.stdout


# --- through a real Celery worker -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_worker_runs_a_requested_paper_run(
    version: ModelVersion, media: Path, store: Path, settings: Any, celery_worker_factory: Any
) -> None:
    validated(version, settings)
    celery_worker_factory(
        queues="backtest",
        env={
            "MEDIA_ROOT": str(media),
            "TRADEBOT_DATA_DIR": str(store),
            "TRADEBOT_GATES": json.dumps(GENEROUS),
        },
    )
    run = runs.paper_run_request(model_version=version, requested_by=None, config={"days": 5})

    run.refresh_from_db()
    outcome = AsyncResult(run.task_id).get(timeout=120)

    run.refresh_from_db()
    version.refresh_from_db()
    assert outcome["status"] == RunStatus.PASSED, outcome["error"]
    assert run.status == RunStatus.PASSED and run.bars == 120
    assert version.state == ModelState.VALIDATED  # a replay readies staging, nothing more
    assert (media / run.report_dir / run.plot_file).is_file()
    assert selectors.passing_replay_run(version) == run
