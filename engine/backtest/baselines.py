"""Baselines every backtest is judged beside: buy-and-hold, always-flat, and random long/flat.

A model earns nothing by trading if a coin flip with the same habits does as well. The random
baseline is a two-state (flat/long) Markov chain per seed whose stationary exposure and mean
holding period equal the model's, so it pays the same costs for the same amount of trading.
The model's percentile in that distribution says how much of its result luck explains.

The random paths are valued with the simulator's rules (docs/backtest.md), vectorised over
seeds: a long entered at bar t's open pays slippage and the fee and is marked at the close;
an exit at an open pays both again; a position still open at the end is valued at the last
close without an exit fee. Positions are fully invested (weight 1.0), like ml_basic's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.backtest.costs import BPS
from engine.backtest.errors import BacktestError

DEFAULT_SEEDS = 200
MIN_SEEDS = 200  # fewer paths would make the 5th and 95th percentiles noise
PERCENTILES = (5, 25, 50, 75, 95)


@dataclass(frozen=True)
class RandomBaseline:
    """Total returns after costs of `seeds` random long/flat paths, and where the model falls."""

    seeds: int
    exposure: float
    mean_holding_bars: float
    total_returns: np.ndarray
    model_total_return: float

    @property
    def percentiles(self) -> dict[str, float]:
        values = np.percentile(self.total_returns, PERCENTILES)
        return {f"p{p}": float(v) for p, v in zip(PERCENTILES, values, strict=True)}

    @property
    def model_percentile(self) -> float:
        """Share of random paths the model beat, ties counted half (mid-rank), in percent."""
        below = float(np.sum(self.total_returns < self.model_total_return))
        ties = float(np.sum(self.total_returns == self.model_total_return))
        return 100.0 * (below + 0.5 * ties) / self.seeds

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "exposure": self.exposure,
            "mean_holding_bars": self.mean_holding_bars,
            "total_return_percentiles": self.percentiles,
            "mean_total_return": float(self.total_returns.mean()),
            "model_total_return": self.model_total_return,
            "model_percentile": self.model_percentile,
        }


def always_flat() -> dict[str, Any]:
    """Never trading: no costs, no risk, no return. The floor any strategy must clear."""
    return {"total_return": 0.0, "sharpe": 0.0, "n_trades": 0, "max_drawdown": 0.0}


def random_positions(
    n_bars: int, exposure: float, mean_holding_bars: float, seeds: int, seed: int = 0
) -> np.ndarray:
    """(seeds, n_bars) 0/1 positions in force during each bar; bar 0 is always flat.

    Leaving a long position has probability 1/mean_holding_bars per bar; entering has the
    probability that makes the chain's long share equal `exposure`.
    """
    positions = np.zeros((seeds, n_bars), dtype=np.int8)
    if exposure <= 0 or mean_holding_bars <= 0 or n_bars < 2:
        return positions
    leave = min(1.0, 1.0 / max(mean_holding_bars, 1.0))
    enter = 1.0 if exposure >= 1 else min(1.0, exposure * leave / (1.0 - exposure))
    draws = np.random.default_rng(seed).random((seeds, n_bars))
    state = np.zeros(seeds, dtype=bool)
    for bar in range(1, n_bars):
        state = np.where(state, draws[:, bar] >= leave, draws[:, bar] < enter)
        positions[:, bar] = state
    return positions


def long_flat_total_returns(
    candles: pd.DataFrame, positions: np.ndarray, fee_bps: float, slippage_bps: float
) -> np.ndarray:
    """Total return after costs of each row of 0/1 `positions` (in force from each bar's open)."""
    open_ = candles["open"].to_numpy(dtype=np.float64)
    close = candles["close"].to_numpy(dtype=np.float64)
    slip, fee = slippage_bps * BPS, fee_bps * BPS
    held = positions.astype(bool)
    before = np.concatenate([np.zeros((len(held), 1), dtype=bool), held[:, :-1]], axis=1)
    previous_close = np.concatenate(([open_[0]], close[:-1]))
    growth = np.ones(held.shape, dtype=np.float64)
    entering = held & ~before
    holding = held & before
    leaving = ~held & before
    # A long 1.0 spends all equity: quantity * entry * (1 + fee) = equity (simulator rule).
    growth = np.where(entering, close / (open_ * (1 + slip) * (1 + fee)), growth)
    growth = np.where(holding, close / previous_close, growth)
    growth = np.where(leaving, open_ * (1 - slip) * (1 - fee) / previous_close, growth)
    return np.prod(growth, axis=1) - 1.0


def random_long_flat_baseline(
    candles: pd.DataFrame,
    *,
    exposure: float,
    mean_holding_bars: float,
    model_total_return: float,
    fee_bps: float,
    slippage_bps: float,
    seeds: int = DEFAULT_SEEDS,
    seed: int = 0,
) -> RandomBaseline:
    """The distribution of random long/flat results at the model's exposure and holding period."""
    if seeds < MIN_SEEDS:
        raise BacktestError(f"the random baseline needs at least {MIN_SEEDS} seeds, got {seeds}")
    if not 0.0 <= exposure <= 1.0:
        raise BacktestError(f"exposure must be between 0 and 1, got {exposure}")
    positions = random_positions(len(candles), exposure, mean_holding_bars, seeds, seed)
    returns = long_flat_total_returns(candles, positions, fee_bps, slippage_bps)
    return RandomBaseline(
        seeds, float(exposure), float(mean_holding_bars), returns, float(model_total_return)
    )


def random_regime_targets(n: int, rng: np.random.Generator, mean_bars: float = 24) -> np.ndarray:
    """A skill-less long/flat target series: alternating regimes of geometric length.

    What the gates' false-pass rate is measured on (the real-candle test and
    benchmarks/bench_i12_random_gates.py), starting long or flat at random.
    """
    targets, state, bar = np.zeros(n), int(rng.integers(0, 2)), 0
    while bar < n:
        length = int(rng.geometric(1 / mean_bars))
        targets[bar : bar + length] = state
        bar, state = bar + length, 1 - state
    return targets


def mean_holding_bars(trades: pd.DataFrame) -> float:
    """Average bars a trade was held (0 with no trades): the random baseline's rhythm."""
    if not len(trades):
        return 0.0
    return float(trades["bars_held"].to_numpy(dtype=np.float64).mean())
