"""A check that catches a model or strategy reading bars (or sentiment) after the one it decides on.

A causal model predicts bar t from bars <= t and the sentiment published by t's close. So if
every bar after a cut is replaced by a different, deterministic copy (prices and volume
noised, unpublished sentiment scrambled), its raw predictions and its decisions up to the cut
must not move. A leak does move them: a shift(-1), a centred rolling window, normalising with
full-sample statistics, a sentiment value used before it was published.

The check compares raw predictions (when the strategy has a model) and targets on
`DEFAULT_CUTS` cuts spread over the window, and reports the first cut and bar that differ.
Each cut is tried twice: truncated (the data ends at the cut, with only the sentiment
published by then: what the live engine has) and perturbed (same length, later bars and
unpublished sentiment changed). Truncation catches a decision that a perturbation leaves on
the same side of a threshold; perturbation catches a leak that only reads the sample's size
or its last rows, and moves every continuous prediction that reads a later bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.strategies.base import LookaheadError, Strategy

DAY = pd.Timedelta(days=1)
DEFAULT_CUTS = 20
# Same inputs up to the cut must give the same outputs; ONNX Runtime is deterministic for the
# same batch, so only float noise far below any real prediction is forgiven.
RTOL = 1e-9
ATOL = 1e-12
PRICE_NOISE = 0.05  # log-scale noise on the perturbed bars' prices: far above float noise
VARIANTS = ("truncated", "perturbed")  # how the data after a cut is changed, in this order
SEED = 20141201  # fixed: the check is reproducible run to run


@dataclass(frozen=True)
class LookaheadFinding:
    """What the check found: `leak` False means every cut agreed."""

    leak: bool
    cuts: int
    series: str | None = None  # "predictions" or "targets"
    how: str | None = None  # "truncated" (data ends at the cut) or "perturbed" (later bars differ)
    cut: str | None = None  # last bar kept as it was
    bar: str | None = None  # first bar whose value moved
    value: float | None = None  # on the real data
    changed_value: float | None = None  # with the data after the cut truncated or perturbed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def detail(self) -> str:
        if not self.leak:
            return (
                f"raw predictions and targets unchanged on {self.cuts} cuts, with the data after "
                "each cut removed and, separately, perturbed"
            )
        change = "removed" if self.how == "truncated" else "perturbed"
        return (
            f"leak: the {self.series} at bar {self.bar} moved from {self.value} to "
            f"{self.changed_value} when the data after the cut at {self.cut} was {change} "
            f"(first leaking cut of {self.cuts})"
        )


def sentiment_known_by(sentiment: pd.Series | None, moment: pd.Timestamp) -> pd.Series | None:
    """The sentiment values already published at `moment` (a day's value is known at its end)."""
    if sentiment is None:
        return None
    return sentiment[sentiment.index + DAY <= moment]


def cut_positions(n_bars: int, first_bar: int, n_cuts: int) -> list[int]:
    """Up to `n_cuts` bar positions from `first_bar` to the last bar but one, evenly spread."""
    last = n_bars - 2  # at least one bar after each cut to perturb
    if last < first_bar:
        return []
    return sorted({int(p) for p in np.linspace(first_bar, last, n_cuts).round()})


def perturb_after(
    candles: pd.DataFrame,
    sentiment: pd.Series | None,
    cut: int,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.Series | None]:
    """A copy where bars after `cut` and the sentiment not yet published at its close differ.

    Each later bar's open, high, low and close are scaled by one random factor (so the bar
    stays a valid bar) and its volume by another; unpublished sentiment values are shifted by
    a random non-zero amount inside 0..100.
    """
    changed = candles.copy()
    later = len(candles) - cut - 1
    prices = [c for c in ("open", "high", "low", "close") if c in changed.columns]
    factor = np.exp(rng.normal(0.0, PRICE_NOISE, later))
    changed.iloc[cut + 1 :, [changed.columns.get_loc(c) for c in prices]] = (
        changed[prices].iloc[cut + 1 :].to_numpy() * factor[:, None]
    )
    if "volume" in changed.columns:
        column = changed.columns.get_loc("volume")
        changed.iloc[cut + 1 :, column] = changed["volume"].iloc[cut + 1 :].to_numpy() * np.exp(
            rng.normal(0.0, 0.5, later)
        )
    if sentiment is None or sentiment.empty:
        return changed, sentiment
    step = candles.index[1] - candles.index[0] if len(candles) > 1 else pd.Timedelta(0)
    decided_at = candles.index[cut] + step  # the cut bar's close
    unpublished = np.asarray(sentiment.index + DAY > decided_at)
    values = sentiment.to_numpy(dtype=np.float64).copy()
    shift = rng.integers(20, 81, int(unpublished.sum()))
    values[unpublished] = (values[unpublished] + shift) % 101
    return changed, pd.Series(values, index=sentiment.index, name=sentiment.name)


def _first_difference(expected: np.ndarray, got: np.ndarray) -> int | None:
    same = np.isclose(got, expected, rtol=RTOL, atol=ATOL) | (np.isnan(got) & np.isnan(expected))
    moved = np.flatnonzero(~same)
    return int(moved[0]) if len(moved) else None


def _outputs(
    strategy: Strategy, candles: pd.DataFrame, sentiment: pd.Series | None
) -> dict[str, np.ndarray]:
    """The strategy's targets and, when it has a model, the model's raw predictions."""
    targets = strategy.targets(candles, sentiment)
    outputs = {}
    predictions = getattr(strategy, "last_predictions", None)
    if predictions is not None:
        outputs["predictions"] = np.asarray(predictions, dtype=np.float64)
    outputs["targets"] = np.asarray(targets, dtype=np.float64)
    return outputs


def find_lookahead(
    strategy: Strategy,
    candles: pd.DataFrame,
    sentiment: pd.Series | None = None,
    *,
    first_bar: int = 0,
    n_cuts: int = DEFAULT_CUTS,
    positions: Sequence[int] | None = None,
    variants: Sequence[str] = VARIANTS,
) -> LookaheadFinding:
    """Perturb the bars after each cut and compare predictions and targets up to it.

    Cuts are spread from `first_bar` (the window's first bar in `candles`, which may start
    with warm-up history) to the end, unless `positions` names them. Returns the first cut
    (in time) at which something moved. `variants` narrows the tries (benchmarks and tests
    measure each alone); gated runs use both.
    """
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        raise ValueError(f"look-ahead variants must be some of {VARIANTS}, got {list(variants)}")
    full = _outputs(strategy, candles, sentiment)
    if "predictions" in full:
        # Cut only where the model predicts: a prefix shorter than its look-back may be refused.
        finite = np.flatnonzero(np.isfinite(full["predictions"]))
        first_bar = max(first_bar, int(finite[0])) if len(finite) else len(candles)
    if positions is not None:
        cuts = list(positions)
    else:
        cuts = cut_positions(len(candles), first_bar, n_cuts)
    rng = np.random.default_rng(SEED)
    step = candles.index[1] - candles.index[0] if len(candles) > 1 else pd.Timedelta(0)
    for cut in cuts:
        prefix = candles.iloc[: cut + 1]
        # Drawn for every cut, used or not: a cut's perturbation does not depend on `variants`.
        perturbed = perturb_after(candles, sentiment, cut, rng)
        for how in variants:
            if how == "truncated":
                frame, frame_sentiment = (
                    prefix,
                    sentiment_known_by(sentiment, prefix.index[-1] + step),
                )
            else:
                frame, frame_sentiment = perturbed
            got = _outputs(strategy, frame, frame_sentiment)
            for series, expected in full.items():
                bar = _first_difference(expected[: cut + 1], got[series][: cut + 1])
                if bar is not None:
                    return LookaheadFinding(
                        leak=True,
                        cuts=len(cuts),
                        series=series,
                        how=how,
                        cut=candles.index[cut].isoformat(),
                        bar=candles.index[bar].isoformat(),
                        value=float(expected[bar]),
                        changed_value=float(got[series][bar]),
                    )
    return LookaheadFinding(leak=False, cuts=len(cuts))


def check_no_lookahead(
    strategy: Strategy,
    candles: pd.DataFrame,
    sentiment: pd.Series | None = None,
    *,
    cuts: Sequence[float] | None = None,
    first_bar: int = 0,
    n_cuts: int = DEFAULT_CUTS,
) -> None:
    """Raise LookaheadError naming the cut and bar if `find_lookahead` finds a leak.

    `cuts`, if given, are fractions of the frame where cuts fall (instead of `n_cuts`).
    """
    positions = None
    if cuts is not None:
        positions = [min(len(candles) - 2, max(0, int(len(candles) * c) - 1)) for c in cuts]
    finding = find_lookahead(
        strategy, candles, sentiment, first_bar=first_bar, n_cuts=n_cuts, positions=positions
    )
    if finding.leak:
        raise LookaheadError(
            f"strategy {getattr(strategy, 'name', strategy)!r} reads the future: {finding.detail}"
        )
