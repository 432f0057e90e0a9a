"""The guide's commands as the guide writes them, and the CLI's hygiene around them.

`run_live_trading ml_basic --paper-trading` defaults to the production version's artifacts
(named in the output) or says in one line to add --model-dir; an unknown strategy, a
non-ISO date and a start after the end are one-line errors; TensorFlow stays quiet.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from engine.progress import progress_reporter
from models_registry.models import ModelState
from models_registry.services.model_versions import version_dir
from tests.conftest import PROJECT_ROOT


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.django_db
def test_run_live_trading_defaults_to_the_production_models_artifacts(
    version_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    live = version_factory(ModelState.IN_PRODUCTION)
    version_factory(ModelState.APPROVED)  # newer, but not in production: not the default
    with pytest.raises(SystemExit):  # the engine's exit code (the tiny model may fail a check)
        call_command("run_live_trading", "ml_basic", "--paper-trading", "--check-only")
    out = capsys.readouterr().out
    folder = version_dir(live)
    assert f"model: {live.name} v{live.version} (in production), from {folder}" in out
    assert f"model dir: {folder}" in out


@pytest.mark.django_db
def test_run_live_trading_without_a_production_model_says_to_add_model_dir(
    version_factory: Any,
) -> None:
    version_factory(ModelState.APPROVED)
    with pytest.raises(CommandError, match=r"no model has a version in production.*--model-dir"):
        call_command("run_live_trading", "ml_basic", "--paper-trading")


def test_an_unknown_strategy_is_refused_even_with_check_only() -> None:
    completed = manage("run_live_trading", "ml_fancy", "--check-only")
    assert completed.returncode == 2
    assert "unknown strategy 'ml_fancy'; known strategies: buy_and_hold, ml_basic" in (
        completed.stderr
    )
    assert "model dir" not in completed.stdout
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("fetch_klines", "BTCUSDT", "--interval", "1h", "--since", "12/03/2025"),
        ("data_report", "BTCUSDT", "--interval", "1h", "--start", "03/12/2025"),
        ("train_model", "BTCUSDT", "--start", "12.03.2025"),
        ("run_backtest", "ml_basic", "--start", "March 12 2025"),
    ],
)
def test_dates_are_iso_8601_only(args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError, match=r"is not an ISO 8601 date \(e\.g\. 2025-03-12"):
        call_command(*args)


def test_the_engine_refuses_a_non_iso_replay_date() -> None:
    completed = manage("run_live_trading", "buy_and_hold", "--replay", "--from", "12/03/2025")
    assert completed.returncode == 2
    assert "'12/03/2025' is not an ISO 8601 date" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("fetch_klines", "BTCUSDT", "--interval", "1h", "--since", "2025-03-12",
             "--until", "2025-03-01"),
            "--since 2025-03-12T00:00:00+00:00 is not before --until 2025-03-01T00:00:00+00:00",
        ),
        (
            ("data_report", "BTCUSDT", "--interval", "1h", "--start", "2025-03-12",
             "--end", "2025-03-12"),
            "--start 2025-03-12T00:00:00+00:00 is not before --end",
        ),
    ],
)  # fmt: skip
def test_a_start_not_before_the_end_is_an_error(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match=message.replace("+", r"\+")):
        call_command(*args, "--data-dir", str(tmp_path))


def test_replay_start_after_end_is_an_error() -> None:
    completed = manage(
        "run_live_trading", "buy_and_hold", "--replay", "--from", "2025-03-12", "--to", "2025-03-01"
    )
    assert completed.returncode == 2
    assert "--from 2025-03-12T00:00:00+00:00 is not before --to" in completed.stderr


def test_tensorflow_is_silent_in_commands_and_in_the_celery_app() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GRPC_"))}
    probes = [
        [sys.executable, "manage.py", "shell", "-c", "import tensorflow"],
        [sys.executable, "-c", "import tradebot.celery, tensorflow"],
    ]
    for command in probes:
        completed = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True,
                                   text=True, timeout=120, check=True)  # fmt: skip
        noise = [line for line in completed.stderr.splitlines() if "AXES" not in line]
        assert noise == [], noise
    # The probe can see noise: without the silencing, importing TensorFlow prints C++ logs.
    loud = subprocess.run([sys.executable, "-c", "import tensorflow"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert "cpu_feature_guard" in loud.stderr or "I0000" in loud.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise() -> None:
    plain = io.StringIO()
    with progress_reporter("BTCUSDT 1h", unit="candle", stream=plain, min_interval=0) as update:
        for done in (1000, 2000, 2500):
            update(done, 2500)
    assert plain.getvalue().splitlines() == [
        "BTCUSDT 1h: 1000/2500 candle (40%)",
        "BTCUSDT 1h: 2000/2500 candle (80%)",
        "BTCUSDT 1h: 2500/2500 candle (100%)",
    ]
    throttled = io.StringIO()
    with progress_reporter("x", stream=throttled, min_interval=3600) as update:
        for done in range(1, 11):
            update(done, 10)
    # The first line, then nothing for an hour, then always the final count.
    assert throttled.getvalue().splitlines() == ["x: 1/10 it (10%)", "x: 10/10 it (100%)"]

    terminal = _Terminal()
    with progress_reporter("BTCUSDT 1h", unit="candle", stream=terminal) as update:
        update(500, 1000)
    assert "\r" in terminal.getvalue() and "500/1000" in terminal.getvalue()


def test_backtest_stages_are_one_bar_on_a_terminal_and_plain_lines_in_a_pipe() -> None:
    from django.core.management.base import OutputWrapper

    from models_registry.management.commands.run_backtest import stage_progress

    piped = io.StringIO()
    # Through Django's stderr wrapper, as the command passes it: no colour, no \r.
    with stage_progress(OutputWrapper(piped), disabled=False) as stage:
        for message in ("loading data", "loading data", "predicting", "simulating"):
            stage(message)
    assert piped.getvalue().splitlines() == [
        "backtest: loading data", "backtest: predicting", "backtest: simulating",
    ]  # fmt: skip
    assert "\r" not in piped.getvalue() and "\x1b[" not in piped.getvalue()

    terminal = _Terminal()
    with stage_progress(OutputWrapper(terminal), disabled=False) as stage:
        stage("predicting")
        stage("simulating")
    drawn = terminal.getvalue()
    assert "\r" in drawn and "backtest: simulating" in drawn
    assert "\x1b[31" not in drawn  # not Django's red error style
    assert drawn.count("\n") <= 1  # one line redrawn, not a line per update


@pytest.mark.django_db
def test_run_live_trading_on_the_production_model_trades_at_the_policy_costs(
    version_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from models_registry.management.commands.run_live_trading import policy_cost_args
    from tests.support.policy import policy_set

    live = version_factory(ModelState.IN_PRODUCTION)
    policy_set({"fee_bps": 12.0, "slippage_bps": 6.0}, scope=live.name, label="hosts")
    with pytest.raises(SystemExit):  # the engine's exit code (the tiny model may fail a check)
        call_command("run_live_trading", "ml_basic", "--paper-trading", "--check-only")
    out = capsys.readouterr().out
    assert "costs: fee 12 bps, slippage 6 bps at least (the policy in force" in out
    argv, _ = policy_cost_args(["ml_basic", "--paper-trading"], live.name)
    assert argv[2:] == ["--fee-bps", "12.0", "--slippage-bps", "6.0"]
    argv, _ = policy_cost_args(["ml_basic", "--slippage-bps", "7"], live.name)
    assert argv[1:] == ["--slippage-bps", "7", "--fee-bps", "12.0"]  # higher is kept

    with pytest.raises(CommandError, match=r"--fee-bps 0 is below the cost of the policy"):
        call_command("run_live_trading", "ml_basic", "--paper-trading", "--fee-bps", "0")
