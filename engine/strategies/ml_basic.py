"""ml_basic: a cost-aware long/flat rule with hysteresis over a model's predictions.

The model predicts over its horizon, in its own units (``units``):

- ``expected_return``: a log return over the horizon. Enter (from flat) when
  ``prediction - round_trip_cost > entry``; the edge must pay a whole round trip.
- ``probability``: the calibrated probability that the horizon return is positive. Enter when
  ``prediction > entry`` (a probability threshold).

Once long, stay long while ``prediction > exit`` (hysteresis): staying costs nothing, so the
round trip is paid once per trade, not on every bar. ``min_hold`` bars after an entry the
position is kept whatever the prediction. No prediction (warm-up, NaN) never enters; while
long, a missing prediction exits (the strategy never guesses).

The rule is sequential: the target at bar t depends on the target at t-1. The live engine
asks for the newest bar only (older predictions NaN), so the strategy remembers the state it
decided per bar and resumes from it in such a frame only; a backtest (every prediction known)
never reads that memory. After an engine restart the memory is empty: the first decision is
made as from flat (see the README).

Parameters live in the version's metadata (``metadata["strategy"]``); see
`params_from_metadata`. Old metadata without the key gets the defaults.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.costs import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from engine.strategies.base import Predictor, StrategyError

if TYPE_CHECKING:  # pandas only where a frame is decided: the live decider needs none
    import pandas as pd

UNITS = ("expected_return", "probability")


def round_trip_cost(fee_bps: float, slippage_bps: float) -> float:
    """Expected cost of entering and leaving once, as a fraction of the position."""
    return 2.0 * (fee_bps + slippage_bps) * 1e-4  # bps as in engine.backtest.costs


@dataclass(frozen=True)
class MlBasicParams:
    units: str = "expected_return"
    entry: float = 0.0
    exit: float = 0.0
    min_hold: int = 0

    def __post_init__(self) -> None:
        if self.units not in UNITS:
            raise StrategyError(f"ml_basic units must be one of {UNITS}, got {self.units!r}")
        for name in ("entry", "exit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise StrategyError(f"ml_basic {name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise StrategyError(f"ml_basic {name} must be a finite number, got {value}")
        if isinstance(self.min_hold, bool) or not isinstance(self.min_hold, int):
            raise StrategyError(f"ml_basic min_hold must be an integer, got {self.min_hold!r}")
        if self.min_hold < 0:
            raise StrategyError(f"ml_basic min_hold must be >= 0 bars, got {self.min_hold}")
        if self.units == "probability" and not (0 <= self.exit <= self.entry <= 1):
            raise StrategyError(
                f"ml_basic probability thresholds need 0 <= exit <= entry <= 1, "
                f"got entry {self.entry}, exit {self.exit}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def params_from_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """ml_basic's parameters recorded in a version's metadata; {} (defaults) when absent."""
    section = (metadata or {}).get("strategy")
    if not isinstance(section, dict) or section.get("name", "ml_basic") != "ml_basic":
        return {}
    params = dict(section.get("params") or {})
    if "units" in section:
        params.setdefault("units", section["units"])
    return params


class MlBasic:
    name = "ml_basic"

    def __init__(
        self,
        predictor: Predictor,
        *,
        fee_bps: float = DEFAULT_FEE_BPS,
        slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
        threshold: float | None = None,
        units: str = "expected_return",
        entry: float | None = None,
        exit: float | None = None,
        min_hold: int = 0,
    ) -> None:
        if predictor is None or not callable(getattr(predictor, "predict", None)):
            raise StrategyError("ml_basic needs a model: pass a predictor with a predict() method")
        # `threshold` is the older name of the entry margin; without an explicit exit it also
        # exits there (no hysteresis), which is what versions trained before hysteresis did.
        if threshold is not None and not math.isfinite(threshold):
            raise StrategyError(f"ml_basic threshold must be a finite number, got {threshold}")
        if entry is None:
            entry = 0.0 if threshold is None else float(threshold)
        self.cost = round_trip_cost(fee_bps, slippage_bps)
        if exit is None:
            exit = entry + self.cost if threshold is not None else 0.0
            if units == "probability":
                exit = min(entry, 0.5)
        self.params = MlBasicParams(units=units, entry=entry, exit=exit, min_hold=min_hold)
        self.predictor = predictor
        self.threshold = self.params.entry
        self.last_predictions: pd.Series | None = None
        self._memory: dict[Any, tuple[float, int]] | _FrameStates = {}
        # A backtest starts flat at its window, as a freshly started engine does: holding is
        # path-dependent, so state carried in from the warm-up history would decide the first
        # trades of the window from bars outside it.
        self.decide_from: pd.Timestamp | None = None

    @property
    def entry_level(self) -> float:
        """The prediction a flat position must exceed to enter, in the model's units."""
        if self.params.units == "expected_return":
            return self.params.entry + self.cost
        return self.params.entry

    def targets(self, candles: pd.DataFrame, sentiment: pd.Series | None = None) -> pd.Series:
        import pandas as pd

        predictions = self.predictor.predict(candles, sentiment)
        if not isinstance(predictions, pd.Series) or not predictions.index.equals(candles.index):
            raise StrategyError("predictor.predict must return a Series indexed like the candles")
        self.last_predictions = predictions
        values = predictions.to_numpy(dtype=np.float64)
        # Only a newest-bar-only frame (the live engine's) resumes remembered state; any other
        # frame is decided from its predictions alone, so memory can never hide a leak.
        if len(values) > 1 and np.isnan(values[:-1]).all():
            out = self._resume_frame(candles.index, values)
        else:
            out = self._whole_frame(candles.index, values)
        return pd.Series(out, index=candles.index, name="target")

    def _whole_frame(self, index: pd.Index, values: np.ndarray) -> np.ndarray:
        """Every bar stepped from its prediction, flat before decide_from: a plain loop over
        floats (a backtest's, and each of the look-ahead check's dozens of re-runs over the
        whole history). The states are kept as arrays; a later live frame reads them."""
        first = 0 if self.decide_from is None else int(index.searchsorted(self.decide_from))
        positions, helds = [0.0] * len(values), [0] * len(values)
        position, held, step = 0.0, 0, self.step
        for i, prediction in enumerate(values[first:].tolist(), start=first):
            position, held = step(prediction, position, held)
            positions[i], helds[i] = position, held
        self._memory = _FrameStates(index, positions, helds)
        return np.array(positions, dtype=np.float64)

    def _resume_frame(self, index: pd.Index, values: np.ndarray) -> np.ndarray:
        """The live engine's frame: bars decided before resume their remembered state."""
        remembered = (
            self._memory.as_dict() if isinstance(self._memory, _FrameStates) else self._memory
        )
        out = np.zeros(len(values))
        position, held = 0.0, 0
        memory: dict[Any, tuple[float, int]] = {}
        for i, (bar, prediction) in enumerate(zip(index, values, strict=True)):
            if self.decide_from is not None and bar < self.decide_from:
                position, held = 0.0, 0
            elif i < len(values) - 1 and bar in remembered:
                position, held = remembered[bar]
            else:
                position, held = self.step(prediction, position, held)
            out[i] = position
            memory[bar] = (position, held)
        self._memory = memory  # only bars of the latest frame: bounded by the live buffer
        return out

    def step(self, prediction: float, position: float, held: int) -> tuple[float, int]:
        """(target, bars held) at a bar from the previous bar's (position, bars held)."""
        if position > 0:
            if held < self.params.min_hold:
                return 1.0, held + 1
            if not math.isnan(prediction) and prediction > self.params.exit:
                return 1.0, held + 1
            return 0.0, 0
        if not math.isnan(prediction) and prediction > self.entry_level:
            return 1.0, 1
        return 0.0, 0


class _FrameStates:
    """(position, bars held) per bar of a whole frame, as lists: a dict only when a live
    frame asks (building one per bar of a three-year history cost more than the rule)."""

    def __init__(self, index: pd.Index, positions: list[float], helds: list[int]) -> None:
        self.index, self.positions, self.helds = index, positions, helds

    def as_dict(self) -> dict[Any, tuple[float, int]]:
        return dict(zip(self.index, zip(self.positions, self.helds, strict=True), strict=True))
