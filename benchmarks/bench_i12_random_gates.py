"""How often random long/flat strategies pass validation gates on real BTCUSDT candles (#12).

    .venv/bin/python benchmarks/bench_i12_random_gates.py [--seeds 10] [--step-days 30]

Each 90-day window (stepped by --step-days over ../shared/data/BTCUSDT-1h.csv) is simulated
with policy costs (10 bps fee, 5 bps slippage) for --seeds random long/flat target series
(regimes of geometric length, mean 24 bars, about half the time long), judged by the engine's
own `simulate_and_judge` (the path every validation takes). It prints the share that passes
(a) the old default gates (min_sharpe 0, max_drawdown 0.35, min_trades 3, min_bars 720) and
(b) today's `engine.backtest.gates.DEFAULT_GATES` (DSR >= 0.95, total return > 0, beats
buy-and-hold and always-flat, drawdown, trades, bars) at ONE trial, the most lenient count:
more trials deflate further.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from engine.backtest.baselines import random_regime_targets  # noqa: E402
from engine.backtest.gates import DEFAULT_GATES, evaluate_gates, gates_passed  # noqa: E402
from engine.backtest.runner import simulate_and_judge  # noqa: E402
from engine.backtest.simulator import SimulationConfig  # noqa: E402

OLD_DEFAULT_GATES = {"min_sharpe": 0.0, "max_drawdown": 0.35, "min_trades": 3, "min_bars": 720}

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "BTCUSDT-1h.csv"
WINDOW_BARS = 90 * 24


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--step-days", type=int, default=30)
    args = parser.parse_args()
    candles = pd.read_csv(DATA, parse_dates=["date"], index_col="date")
    candles.index = candles.index.tz_localize("UTC")
    config = SimulationConfig(fee_bps=10.0, slippage_bps=5.0)
    old = new = total = 0
    for start in range(0, len(candles) - WINDOW_BARS, args.step_days * 24):
        window = candles.iloc[start : start + WINDOW_BARS]
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed * 100_003 + start)
            targets = pd.Series(random_regime_targets(len(window), rng), index=window.index)
            result, judged = simulate_and_judge(window, targets, config, gates=DEFAULT_GATES)
            passed_old = gates_passed(evaluate_gates(result.metrics, OLD_DEFAULT_GATES))
            passed_new = gates_passed(judged)
            old += passed_old
            new += passed_new
            total += 1
    print(f"random long/flat runs: {total} ({args.seeds} seeds per 90-day window)")
    print(f"pass the old default gates (min_sharpe 0): {old / total:.1%} ({old})")
    print(f"pass today's default gates (DSR at 1 trial): {new / total:.1%} ({new})")


if __name__ == "__main__":
    main()
