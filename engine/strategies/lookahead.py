"""A check that catches a strategy reading bars after the one it decides on.

A causal strategy decides bar t from bars <= t, so its decisions on a prefix of the data are
the same as its decisions on the full data over that prefix. A strategy that peeks at a later
bar (a shift(-1), a centred window, normalising with full-sample statistics) changes its
decision near the cut and is caught.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.strategies.base import LookaheadError, Strategy

DAY = pd.Timedelta(days=1)


def sentiment_known_by(sentiment: pd.Series | None, moment: pd.Timestamp) -> pd.Series | None:
    """The sentiment values already published at `moment` (a day's value is known at its end)."""
    if sentiment is None:
        return None
    return sentiment[sentiment.index + DAY <= moment]


def check_no_lookahead(
    strategy: Strategy,
    candles: pd.DataFrame,
    sentiment: pd.Series | None = None,
    *,
    cuts: Sequence[float] = (0.5, 0.8),
    full_targets: pd.Series | None = None,
) -> None:
    """Raise LookaheadError if any prefix run disagrees with the full run on the prefix's bars.

    `cuts` are fractions of the frame where prefixes end; `full_targets` skips recomputing
    the full run when the caller already has it.
    """
    full = strategy.targets(candles, sentiment) if full_targets is None else full_targets
    step = candles.index[-1] - candles.index[-2] if len(candles) > 1 else pd.Timedelta(0)
    for cut in cuts:
        end = max(1, int(len(candles) * cut))
        prefix = candles.iloc[:end]
        known = sentiment_known_by(sentiment, prefix.index[-1] + step)
        partial = strategy.targets(prefix, known).to_numpy(dtype=np.float64)
        expected = full.to_numpy(dtype=np.float64)[:end]
        differs = ~((partial == expected) | (np.isnan(partial) & np.isnan(expected)))
        if differs.any():
            bar = int(np.flatnonzero(differs)[0])
            raise LookaheadError(
                f"strategy {getattr(strategy, 'name', strategy)!r} reads the future: its target at "
                f"{candles.index[bar]} is {expected[bar]} with data to {candles.index[-1]} but "
                f"{partial[bar]} with data to {prefix.index[-1]}"
            )
