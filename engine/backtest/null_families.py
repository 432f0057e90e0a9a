"""Skill-less strategy families: what the gates must refuse, measured on real candles (#28).

Each family draws a target series (long 1.0 / flat 0.0, decided at each bar's close) that
knows nothing the market does not already show, from a seeded generator. A gate set that
passes any family in more than a few percent of windows rewards luck or market beta, not
skill. Used by tests/engine/backtest/test_null_families.py and benchmarks/bench_gate_power.py.

- `mostly_long`: long most of the time, flat in random spells (the issue's 9.8% family under
  a DSR of the strategy's own returns: riding a bull market looked like skill);
- `always_long`: long on every bar (buy-and-hold by another name);
- `random_long_flat`: about half the time long, regimes of geometric length;
- `momentum`: long while the close is above its moving average, the length drawn at random
  (a rule with no fitted edge, trading the market's own trend).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

Family = Callable[[pd.DataFrame, np.random.Generator], np.ndarray]


def _alternating(
    n: int, rng: np.random.Generator, long_bars: float, flat_bars: float
) -> np.ndarray:
    """Long and flat spells of geometric length with the given means, starting at random."""
    targets, state, bar = np.zeros(n), int(rng.integers(0, 2)), 0
    while bar < n:
        length = int(rng.geometric(1 / (long_bars if state else flat_bars)))
        targets[bar : bar + length] = state
        bar, state = bar + length, 1 - state
    return targets


def mostly_long(candles: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """About 80% long: long spells of ~5 days, flat spells of ~1 day on average."""
    return _alternating(len(candles), rng, long_bars=120.0, flat_bars=30.0)


def always_long(candles: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    return np.ones(len(candles))


def random_long_flat(candles: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    return _alternating(len(candles), rng, long_bars=24.0, flat_bars=24.0)


def momentum(candles: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Long while the close is above its simple moving average of 12 to 480 bars (random)."""
    length = int(rng.integers(12, 481))
    close = candles["close"]
    average = close.rolling(length, min_periods=1).mean()
    return (close > average).to_numpy(dtype=np.float64)


FAMILIES: dict[str, Family] = {
    "mostly_long": mostly_long,
    "always_long": always_long,
    "random_long_flat": random_long_flat,
    "momentum": momentum,
}
