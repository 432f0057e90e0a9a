"""The default validation gates tell an edge from noise (#12): random strategies fail them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.backtest.baselines import (
    long_flat_total_returns,
    random_positions,
    random_regime_targets,
)
from engine.backtest.gates import DEFAULT_GATES, evaluate_gates, gates_passed
from engine.backtest.runner import simulate_and_judge
from engine.backtest.simulator import SimulationConfig, simulate
from tests.engine.backtest.helpers import random_candles
from tests.engine.features.csv_frames import load_candles

POLICY_COSTS = SimulationConfig(fee_bps=10.0, slippage_bps=5.0)
WINDOW_BARS = 90 * 24


def test_random_long_flat_passes_the_default_gates_in_at_most_5_percent_of_windows(
    shared_data_dir: Path,
) -> None:
    candles = load_candles(shared_data_dir)
    passed = total = 0
    for start in range(0, len(candles) - WINDOW_BARS, 60 * 24):
        window = candles.iloc[start : start + WINDOW_BARS]
        for seed in range(4):
            rng = np.random.default_rng(seed * 100_003 + start)
            targets = pd.Series(random_regime_targets(len(window), rng), index=window.index)
            _, judged = simulate_and_judge(window, targets, POLICY_COSTS, gates=DEFAULT_GATES)
            passed += gates_passed(judged)
            total += 1
    rate = passed / total
    print(f"random long/flat false-pass rate under the default gates: {rate:.1%} of {total}")
    assert total >= 60
    assert rate <= 0.05


def test_a_losing_run_with_a_positive_sharpe_fails() -> None:
    # The case: -1.96% total return passed on min_sharpe 0 with Sharpe 0.085.
    metrics = {
        "total_return": -0.0196,
        "sharpe": 0.085,
        "dsr": 0.2,
        "max_drawdown": 0.1,
        "n_trades": 12,
        "n_bars": 2160,
        "buy_and_hold": {"total_return": -0.05},
        "baselines": {"always_flat": {"total_return": 0.0}},
    }
    failed = {r.name for r in evaluate_gates(metrics, DEFAULT_GATES) if not r.passed}
    assert failed == {"min_dsr", "total_return_above", "beats_always_flat_by"}


def test_a_flat_model_fails_min_dsr_and_says_why() -> None:
    candles = random_candles(800, seed=3)
    targets = pd.Series(0.0, index=candles.index)
    result, judged = simulate_and_judge(candles, targets, POLICY_COSTS, gates=DEFAULT_GATES)
    dsr = next(r for r in judged if r.name == "min_dsr")
    assert result.metrics["dsr"] is None and not dsr.passed
    assert "zero variance" in dsr.detail


def test_more_trials_lower_the_dsr_of_the_same_returns() -> None:
    candles = random_candles(2000, seed=5)
    targets = pd.Series(random_regime_targets(2000, np.random.default_rng(1)), index=candles.index)
    one, _ = simulate_and_judge(candles, targets, POLICY_COSTS, trials=1)
    many, _ = simulate_and_judge(candles, targets, POLICY_COSTS, trials=50)
    assert many.metrics["trials"] == 50
    assert many.metrics["dsr"] < one.metrics["dsr"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_random_baseline_values_paths_as_the_simulator_does(seed: int) -> None:
    candles = random_candles(500, seed=seed)
    positions = random_positions(len(candles), 0.4, 12.0, seeds=5, seed=seed)
    fast = long_flat_total_returns(candles, positions, 10.0, 5.0)
    for row, expected in zip(positions, fast, strict=True):
        # positions are in force from each bar's open: the target is one bar earlier.
        targets = np.append(row[1:], 0.0).astype(float)
        result = simulate(candles, targets, POLICY_COSTS, with_buy_and_hold=False)
        assert result.metrics["total_return"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_the_random_baseline_matches_the_model_exposure() -> None:
    positions = random_positions(20_000, 0.3, 10.0, seeds=200, seed=0)
    assert positions.mean() == pytest.approx(0.3, abs=0.02)
